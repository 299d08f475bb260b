#!/usr/bin/env bash
# The whole test suite: every crate's unit and integration tests, then the tests that change the
# whole machine (the system clock) alone, then the doc tests. With arguments, only the first
# step runs, with them (e.g. `scripts/test.sh -E 'binary(faults)'`).
# Tests needing root skip loudly when not root, and fail instead under SKIFF_E2E_REQUIRED=1.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
cargo nextest run --workspace --locked --no-fail-fast --profile ci "$@" || status=$?
if (($# == 0)); then
  # #[ignore]d because nothing else may run while the clock jumps (tests/tests/faults_clock.rs).
  cargo nextest run --workspace --locked --no-fail-fast --profile ci \
    --run-ignored only -E 'binary(faults_clock)' --test-threads 1 || status=$?
  cargo test --workspace --locked --doc || status=$?
fi
exit "$status"

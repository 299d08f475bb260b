#!/usr/bin/env bash
# The whole test suite: every crate's unit and integration tests, then the doc tests.
# Tests needing root skip loudly when not root, and fail instead under SKIFF_E2E_REQUIRED=1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --locked --no-fail-fast --profile ci "$@"
cargo test --workspace --locked --doc

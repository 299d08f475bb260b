#!/usr/bin/env python3
"""Writes the hand-picked seeds of the link frame decoder (replayed by
`cargo test -p skiff-link --test fuzz_frames corpus_seeds_replay`).

The file name tells the expected outcome: `frames-N-*` (N complete frames, nothing left over),
`toolarge-*` (an announcement over the 4 MiB limit), `partial-*` (waits for more bytes).
Run from anywhere: `python3 crates/skiff-link/tests/corpus/generate.py`.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAX = 4 << 20


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def msg(obj) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":")).encode())


SEEDS = {
    "frames-0-empty": b"",
    "frames-1-heartbeat": msg({"type": "heartbeat", "seq": 1}),
    "frames-1-empty-payload": frame(b""),
    "frames-3-mixed": msg({"type": "watchNodes"})
    + frame(b"\xff\xfe not json")
    + msg({"type": "goodbye", "reason": "\u00e9\u0000\ud7ff"}),
    "frames-1-unknown-type": msg({"type": "launchMissiles", "seq": -1}),
    "frames-1-deep-json": frame(b"[" * 200 + b"]" * 200),
    "toolarge-limit-plus-one": struct.pack(">I", MAX + 1),
    "toolarge-u32-max": struct.pack(">I", 0xFFFFFFFF) + b"x" * 16,
    "toolarge-after-valid": msg({"type": "heartbeat", "seq": 2}) + struct.pack(">I", 0x7FFFFFFF),
    "partial-three-prefix-bytes": b"\x00\x00\x00",
    "partial-body-short": struct.pack(">I", 100) + b"{" * 99,
    "partial-at-limit-announced": struct.pack(">I", MAX),
}

for name, data in SEEDS.items():
    with open(os.path.join(HERE, name + ".bin"), "wb") as f:
        f.write(data)

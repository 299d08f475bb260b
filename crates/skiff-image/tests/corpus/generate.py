#!/usr/bin/env python3
"""Writes hostile (and a few legitimate) layer archives replayed by
`cargo test -p skiff-image --test fuzz_unpack corpus_archives_replay`.

The test unpacks each into `WORK/layer/` next to `WORK/outside/{secret,dir/config}`, so
`../outside/...` from the layer root is the victim. `refused-*` archives must fail, `ok-*`
archives must unpack; none may change `WORK/outside/` or create /tmp/skiff-fuzz-escape.
Run from anywhere: `python3 crates/skiff-image/tests/corpus/generate.py`.
"""
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ABS = "/tmp/skiff-fuzz-escape"


def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, size=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_600_000_000
    info.linkname = link
    info.size = len(data) if size is None else size
    return info, data


def write(name, entries, fmt=tarfile.GNU_FORMAT, raw_tail=b""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and info.size == len(data):
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    body = buf.getvalue() + raw_tail
    with open(os.path.join(HERE, name + ".tar"), "wb") as f:
        f.write(body)


D = tarfile.DIRTYPE
SYM = tarfile.SYMTYPE
LNK = tarfile.LNKTYPE

write("refused-dotdot", [entry("../outside/secret", data=b"pwned\n")])
write("refused-dotdot-nested", [entry("a/b/../../../outside/secret", data=b"pwned\n")])
write("refused-absolute", [entry(ABS + "/file", data=b"pwned\n")])
write(
    "refused-symlink-then-write-through",
    [entry("link", SYM, link="../outside"), entry("link/secret", data=b"pwned\n")],
)
write(
    "refused-absolute-symlink-then-write-through",
    [entry("link", SYM, link="/tmp"), entry("link/skiff-fuzz-escape", data=b"pwned\n")],
)
write(
    "refused-symlink-dir-then-mkdir-through",
    [entry("link", SYM, link="../outside/dir"), entry("link/sub", D, mode=0o755)],
)
write("refused-hardlink-outside", [entry("h", LNK, link="../outside/secret")])
write("refused-hardlink-absolute", [entry("h", LNK, link="/etc/passwd")])
write(
    "refused-hardlink-through-symlink",
    [entry("link", SYM, link="../outside"), entry("h", LNK, link="link/secret")],
)
write("refused-whiteout-dotdot", [entry("a/.wh...", data=b"")])
write("refused-huge-declared-size", [entry("big", size=8 << 30)])
write(
    "refused-pax-path-dotdot",
    [entry("../../outside/dir/config", data=b"pwned\n")],
    fmt=tarfile.PAX_FORMAT,
)
write("refused-gnu-longname-dotdot", [entry("../" + "n" * 150, data=b"x")])
write("refused-truncated", [entry("f", data=b"x" * 2000)], raw_tail=b"")
# Truncate the last one by hand: keep the header and half the data.
path = os.path.join(HERE, "refused-truncated.tar")
with open(path, "rb") as f:
    data = f.read()
with open(path, "wb") as f:
    f.write(data[: 512 + 1000])

write(
    "ok-symlink-out-is-only-text",
    [entry("etc", D, mode=0o755), entry("etc/link", SYM, link="../../outside/secret")],
)
write(
    "ok-whiteouts",
    [
        entry("d", D, mode=0o755),
        entry("d/.wh..wh..opq"),
        entry("d/.wh.gone"),
        entry("d/file", data=b"kept\n"),
    ],
)
write(
    "ok-replace-symlink-with-dir",
    [entry("x", SYM, link="../outside"), entry("x", D, mode=0o755), entry("x/f", data=b"in\n")],
)
write("ok-hardlink-inside", [entry("f", data=b"a"), entry("g", LNK, link="f")])

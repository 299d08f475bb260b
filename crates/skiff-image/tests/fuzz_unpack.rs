//! Property tests of the layer unpacker: generated and mutated tar streams — `..` paths,
//! absolute paths, symlinks out of the root and entries written through them, hard links to
//! files outside, whiteouts, device nodes, PAX and GNU long names, absurd declared sizes,
//! flipped and truncated bytes — never make it panic and never change anything outside the
//! target directory.
//!
//! Long run: `PROPTEST_CASES=5000 cargo test -p skiff-image --test fuzz_unpack`; the hostile
//! archives of `tests/corpus/` (made by `tests/corpus/generate.py`) are replayed every run.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use skiff_image::unpack::unpack_layer;
use skiff_image::{DevicePolicy, SetidPolicy, UnpackPolicy};

/// Stands for the absolute path of the directory outside the layer, filled in per case.
const OUT: &str = "@OUT";

/// A sandbox: `outside/` holds what an attacker would like to touch, `layer/` is the target.
struct Sandbox {
    work: tempfile::TempDir,
    before: Vec<String>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let work = tempfile::tempdir().expect("tempdir");
        let outside = work.path().join("outside");
        fs::create_dir_all(outside.join("dir")).expect("outside dir");
        fs::write(outside.join("secret"), "do not touch\n").expect("secret");
        fs::write(outside.join("dir/config"), "x=1\n").expect("config");
        fs::create_dir(work.path().join("layer")).expect("layer dir");
        let before = snapshot(work.path(), &work.path().join("layer"));
        Sandbox { work, before }
    }

    fn outside(&self) -> PathBuf {
        self.work.path().join("outside")
    }

    fn layer(&self) -> PathBuf {
        self.work.path().join("layer")
    }

    /// Nothing but `layer/` changed, and no hard link was made to an outside file.
    fn assert_outside_untouched(&self, what: &str) {
        let after = snapshot(self.work.path(), &self.layer());
        assert_eq!(
            after, self.before,
            "{what}: files outside the layer changed"
        );
        for file in ["secret", "dir/config"] {
            let meta = fs::symlink_metadata(self.outside().join(file)).expect("sentinel");
            assert_eq!(meta.nlink(), 1, "{what}: hard link made to outside/{file}");
        }
    }
}

/// Path, kind, mode, link count and content of everything under `root` except `skip`.
fn snapshot(root: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&path).expect("stat");
        let content = if meta.is_file() {
            String::from_utf8_lossy(&fs::read(&path).expect("read")).into_owned()
        } else if meta.file_type().is_symlink() {
            fs::read_link(&path)
                .expect("readlink")
                .display()
                .to_string()
        } else {
            String::new()
        };
        out.push(format!(
            "{} {:o} {} {content:?}",
            path.display(),
            meta.permissions().mode(),
            meta.nlink()
        ));
        if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("readdir") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    out.sort();
    out
}

/// One generated tar entry; paths and link targets may contain [`OUT`].
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: u8,
    link: String,
    mode: u32,
    data: Vec<u8>,
    /// Size written in the header, when it should lie about the data.
    declared: Option<u64>,
    /// Put the path in a PAX record (the header name is then a decoy).
    pax_path: bool,
    /// Put the path in a GNU long-name entry.
    gnu_long: bool,
    /// Extra PAX records (xattrs).
    pax: Vec<(String, Vec<u8>)>,
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    if text.len() <= width {
        field[..width].copy_from_slice(text.as_bytes());
        field[width] = 0;
    } else {
        // GNU base-256 for numbers that do not fit in octal.
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = bytes.len().min(field.len() - 1);
        let len = field.len();
        field[len - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    }
}

/// A raw ustar header: any name bytes (no checks), so hostile names can be written.
fn header(name: &[u8], kind: u8, link: &[u8], mode: u32, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    h
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN key=value\n" where LEN counts itself.
    let body_len = key.len() + value.len() + 3;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len = len.to_string().len() + body_len;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn build_tar(entries: &[Entry], out_dir: &Path) -> Vec<u8> {
    let fill = |s: &str| s.replace(OUT, &out_dir.display().to_string()).into_bytes();
    let mut tar = Vec::new();
    for e in entries {
        let path = fill(&e.path);
        let link = fill(&e.link);
        let mut records = Vec::new();
        if e.pax_path {
            records.extend(pax_record("path", &path));
            if link.len() > 100 {
                records.extend(pax_record("linkpath", &link));
            }
        }
        for (k, v) in &e.pax {
            records.extend(pax_record(k, v));
        }
        if !records.is_empty() {
            tar.extend(header(
                b"././@PaxHeader",
                b'x',
                b"",
                0o644,
                records.len() as u64,
            ));
            tar.extend(&records);
            pad(&mut tar);
        }
        if e.gnu_long && !e.pax_path {
            let mut name = path.clone();
            name.push(0);
            tar.extend(header(
                b"././@LongLink",
                b'L',
                b"",
                0o644,
                name.len() as u64,
            ));
            tar.extend(&name);
            pad(&mut tar);
        }
        let header_name: &[u8] = if e.pax_path { b"decoy" } else { &path };
        let size = e.declared.unwrap_or(e.data.len() as u64);
        tar.extend(header(header_name, e.kind, &link, e.mode, size));
        tar.extend(&e.data);
        pad(&mut tar);
    }
    tar.extend([0u8; 1024]);
    tar
}

fn component() -> impl Strategy<Value = String> {
    // Mostly names that pass the string checks, so the walk through symlinks, hard links and
    // replaced entries is what gets exercised; the refused forms stay in at lower weight.
    prop_oneof![
        12 => prop::sample::select(
            &[
                "a", "b", "link", "dir", ".", "", "outside", "secret", ".wh.a", ".wh..wh..opq",
                ".wh.link", "...", "config"
            ][..]
        )
        .prop_map(str::to_owned),
        1 => prop::sample::select(&["..", ".wh.", ".wh..", ".wh..."][..]).prop_map(str::to_owned),
        1 => Just("n".repeat(300)),
        2 => "[a-c.]{1,4}",
    ]
}

fn entry_path() -> impl Strategy<Value = String> {
    let lead = prop_oneof![
        8 => prop::sample::select(&["", "./"][..]),
        1 => prop::sample::select(&["/", "../", "../../", "@OUT/"][..]),
    ];
    (lead, vec(component(), 1..4)).prop_map(|(lead, parts)| format!("{lead}{}", parts.join("/")))
}

fn link_target() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "../outside",
                "../outside/secret",
                "../../outside/dir",
                "@OUT",
                "@OUT/secret",
                "@OUT/dir",
                "/",
                "a",
                "link",
                "link/secret",
                "link/dir/config",
                "dir/a",
                "..",
                "",
                ".",
            ][..]
        )
        .prop_map(str::to_owned),
        entry_path(),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop::sample::select(
        &[
            b'0', b'0', b'\0', b'5', b'5', b'2', b'2', b'1', b'1', b'3', b'4', b'6', b'7', b'K',
            b'g', b'?',
        ][..],
    );
    let mode = prop_oneof![
        Just(0o644u32),
        Just(0o755),
        Just(0o4755),
        Just(0o7777),
        any::<u32>()
    ];
    let declared = prop_oneof![
        8 => Just(None),
        1 => prop::sample::select(&[1u64 << 33, u64::MAX >> 2, 513, 1 << 20][..]).prop_map(Some),
    ];
    let pax = vec(
        (
            prop::sample::select(
                &[
                    "SCHILY.xattr.user.x",
                    "SCHILY.xattr.trusted.overlay.opaque",
                    "SCHILY.xattr.security.capability",
                    "size",
                    "uid",
                    "mtime",
                ][..],
            )
            .prop_map(str::to_owned),
            prop_oneof![Just(b"y".to_vec()), vec(any::<u8>(), 0..8)],
        ),
        0..2,
    );
    (
        entry_path(),
        kind,
        link_target(),
        mode,
        vec(any::<u8>(), 0..600),
        declared,
        any::<(bool, bool)>(),
        pax,
    )
        .prop_map(
            |(path, kind, link, mode, data, declared, (pax_path, gnu_long), pax)| Entry {
                path,
                kind,
                link,
                mode,
                // Only regular files carry data; others keep it to lie about their size.
                data: if matches!(kind, b'0' | b'\0') || declared.is_some() {
                    data
                } else {
                    Vec::new()
                },
                declared,
                pax_path,
                gnu_long,
                pax,
            },
        )
}

/// Byte-level damage applied after building: flips and truncation.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Flip(Vec<(usize, u8)>),
    Truncate(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::None),
        2 => vec((any::<usize>(), any::<u8>()), 1..8).prop_map(Damage::Flip),
        1 => any::<usize>().prop_map(Damage::Truncate),
    ]
}

fn policy() -> impl Strategy<Value = UnpackPolicy> {
    (any::<bool>(), 0usize..3, 0usize..3).prop_map(|(devices, setid, limits)| {
        let mut p = UnpackPolicy {
            devices: if devices {
                DevicePolicy::Skip
            } else {
                DevicePolicy::Refuse
            },
            setid: [SetidPolicy::Keep, SetidPolicy::Strip, SetidPolicy::Refuse][setid],
            ..UnpackPolicy::default()
        };
        match limits {
            1 => {
                p.max_bytes = 4096;
                p.max_entries = 3;
                p.max_header_bytes = 600;
            }
            2 => p.max_bytes = 1 << 20,
            _ => {}
        }
        p
    })
}

fn apply(mut tar: Vec<u8>, damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::None => {}
        Damage::Flip(flips) => {
            if !tar.is_empty() {
                let len = tar.len();
                for (at, byte) in flips {
                    tar[at % len] = *byte;
                }
            }
        }
        Damage::Truncate(at) => {
            let len = tar.len();
            tar.truncate(at % (len + 1));
        }
    }
    tar
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The fuzz budget; failures are kept in `proptest-regressions/fuzz_unpack.txt` (committed, replayed
/// before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(
        cases,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_unpack.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config(192))]

    /// Any generated, damaged archive unpacks or fails with an error; either way nothing outside
    /// the layer directory changes.
    #[test]
    fn hostile_archives_never_escape(
        entries in vec(entry(), 1..7),
        damage in damage(),
        policy in policy(),
        compress in prop::bool::weighted(0.15),
    ) {
        let sandbox = Sandbox::new();
        let tar = apply(build_tar(&entries, &sandbox.outside()), &damage);
        let stream = if compress { gzip(&tar) } else { tar };
        let result = unpack_layer(&stream[..], &sandbox.layer(), "fuzz", &policy);
        sandbox.assert_outside_untouched(&format!("{entries:?} {damage:?} → {result:?}"));
    }

    /// Random bytes (and random bytes behind a gzip or zstd magic) are an error or an empty
    /// layer, never a panic.
    #[test]
    fn noise_never_panics(
        head in prop::sample::select(MAGICS),
        noise in vec(any::<u8>(), 0..2048),
    ) {
        let sandbox = Sandbox::new();
        let mut stream = head.to_vec();
        stream.extend(noise);
        let _ = unpack_layer(&stream[..], &sandbox.layer(), "noise", &UnpackPolicy::default());
        sandbox.assert_outside_untouched("noise");
    }
}

/// Stream starts: plain, gzip magic, zstd magic.
const MAGICS: &[&[u8]] = &[b"", &[0x1f, 0x8b], &[0x28, 0xb5, 0x2f, 0xfd]];

/// Where the corpus's absolute-path archives aim (see `tests/corpus/generate.py`).
const ABSOLUTE_TARGET: &str = "/tmp/skiff-fuzz-escape";

/// Replays the hostile archives of `tests/corpus/`: `refused-*` must fail, `ok-*` must
/// unpack; neither may touch anything outside the layer.
#[test]
fn corpus_archives_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("tar") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let data = fs::read(&path).expect("read archive");
        let sandbox = Sandbox::new();
        let result = unpack_layer(&data[..], &sandbox.layer(), name, &UnpackPolicy::default());
        sandbox.assert_outside_untouched(name);
        assert!(
            !Path::new(ABSOLUTE_TARGET).exists(),
            "{name} wrote {ABSOLUTE_TARGET}"
        );
        match name.split('-').next() {
            Some("refused") => assert!(result.is_err(), "{name} was accepted"),
            // Whiteouts are character devices and opaque markers trusted xattrs: root only.
            Some("ok") if name.contains("whiteout") && !rustix::process::geteuid().is_root() => {
                eprintln!("SKIPPED {name}: unpacking whiteouts needs root");
            }
            Some("ok") => assert!(result.is_ok(), "{name}: {result:?}"),
            _ => panic!("{name}: corpus names start with refused- or ok-"),
        }
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} archives in {}", dir.display());
}

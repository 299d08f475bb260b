//! Safe unpacking of one layer (a tar stream, gzip- or zstd-compressed or not) into a directory.
//!
//! Safety does not rest on string checks alone: every entry is created relative to a directory
//! file descriptor reached by opening one path component at a time with `O_NOFOLLOW`, so no
//! symlink — whether in the archive or planted by an earlier entry — is ever followed while
//! writing. On top of that, hostile entries are refused with an error naming them:
//!
//! * `..` components, absolute paths, NUL bytes, names over `NAME_MAX` or paths over `PATH_MAX`;
//! * entries whose parent path passes through a symlink or a non-directory;
//! * hard links whose target is outside the layer, passes through a symlink, does not exist
//!   (yet) in the layer, or is a directory;
//! * device nodes: skipped (default) or refused, per [`DevicePolicy`];
//! * setuid/setgid bits (and file capabilities): kept (default, as Docker), stripped or refused,
//!   per [`SetidPolicy`];
//! * more uncompressed bytes, entries, or extension-header bytes (long names, PAX records) than
//!   the [`UnpackPolicy`] limits — this bounds decompression bombs and absurd sizes before
//!   anything is written.
//!
//! Whiteouts are converted to overlayfs form as they are met: `.wh.NAME` becomes a character
//! device 0:0 `NAME`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Other
//! extended attributes from PAX records are applied only for `user.*` and `security.capability`
//! (never `trusted.*`, which overlayfs interprets). Ownership is applied when running as root.
//!
//! The caller unpacks into a fresh temporary directory and renames it into place only on
//! success, so a failed or interrupted unpack never leaves a layer that looks complete.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, Result};

/// Longest file name component (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;
/// Longest path (Linux `PATH_MAX`, including the terminating NUL).
const PATH_MAX: usize = 4095;
/// Copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Leave them out of the layer (logged). Containers get their `/dev` from the runtime.
    #[default]
    Skip,
    /// Refuse the layer.
    Refuse,
}

/// What to do with setuid/setgid bits and `security.capability` attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetidPolicy {
    /// Keep them, as Docker and containerd do (`ping`, `sudo` need them; `no_new_privileges`
    /// and user namespaces are the runtime's defence).
    #[default]
    Keep,
    /// Clear the bits and drop file capabilities.
    Strip,
    /// Refuse the layer.
    Refuse,
}

/// Limits and policies applied while unpacking a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackPolicy {
    /// Most uncompressed bytes a layer may expand to (tar stream, headers included).
    pub max_bytes: u64,
    /// Most entries a layer may hold.
    pub max_entries: u64,
    /// Most bytes of extension headers (GNU long names, PAX records) before one entry.
    pub max_header_bytes: u64,
    /// Device nodes.
    pub devices: DevicePolicy,
    /// setuid/setgid bits and file capabilities.
    pub setid: SetidPolicy,
}

impl Default for UnpackPolicy {
    fn default() -> Self {
        UnpackPolicy {
            max_bytes: 32 << 30,
            max_entries: 1_000_000,
            max_header_bytes: 1 << 20,
            devices: DevicePolicy::Skip,
            setid: SetidPolicy::Keep,
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafeEntry {
    /// The path has a `..` component.
    ParentDirectory,
    /// The path starts with `/`.
    AbsolutePath,
    /// The path holds a NUL byte.
    NulByte,
    /// A path component is longer than `NAME_MAX`.
    NameTooLong { len: usize },
    /// The path is longer than `PATH_MAX`.
    PathTooLong { len: usize },
    /// A parent directory of the entry is a symlink.
    ThroughSymlink { component: String },
    /// A parent directory of the entry is not a directory.
    NotADirectory { component: String },
    /// A hard link's target is unusable.
    HardlinkTarget { target: String, problem: String },
    /// A character or block device, under [`DevicePolicy::Refuse`].
    DeviceNode,
    /// setuid/setgid bits or file capabilities, under [`SetidPolicy::Refuse`].
    Setid { mode: u32 },
    /// The entry type is not one a layer may hold.
    UnsupportedType { kind: u8 },
    /// The entry declares more bytes than the layer may hold.
    TooLarge { size: u64, limit: u64 },
    /// The layer root itself is given as a non-directory.
    RootNotDirectory,
    /// A symlink or hard link entry has no target.
    MissingLinkTarget,
    /// A uid or gid is out of range.
    InvalidOwner { id: u64 },
}

impl fmt::Display for UnsafeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeEntry::ParentDirectory => write!(f, "path contains '..'"),
            UnsafeEntry::AbsolutePath => write!(f, "path is absolute"),
            UnsafeEntry::NulByte => write!(f, "path contains a NUL byte"),
            UnsafeEntry::NameTooLong { len } => {
                write!(f, "a name is {len} bytes long (limit {NAME_MAX})")
            }
            UnsafeEntry::PathTooLong { len } => {
                write!(f, "path is {len} bytes long (limit {PATH_MAX})")
            }
            UnsafeEntry::ThroughSymlink { component } => {
                write!(f, "path passes through the symlink {component:?}; writing through symlinks is not allowed")
            }
            UnsafeEntry::NotADirectory { component } => {
                write!(f, "parent {component:?} is not a directory")
            }
            UnsafeEntry::HardlinkTarget { target, problem } => {
                write!(f, "hard link target {target:?} {problem}")
            }
            UnsafeEntry::DeviceNode => write!(f, "device nodes are not allowed in layers"),
            UnsafeEntry::Setid { mode } => {
                write!(
                    f,
                    "setuid/setgid bits or file capabilities are not allowed (mode {mode:o})"
                )
            }
            UnsafeEntry::UnsupportedType { kind } => {
                write!(f, "unsupported tar entry type {:?}", char::from(*kind))
            }
            UnsafeEntry::TooLarge { size, limit } => {
                write!(f, "declares {size} bytes, over the layer limit of {limit}")
            }
            UnsafeEntry::RootNotDirectory => write!(f, "the layer root must be a directory"),
            UnsafeEntry::MissingLinkTarget => write!(f, "link has no target"),
            UnsafeEntry::InvalidOwner { id } => write!(f, "owner id {id} is out of range"),
        }
    }
}

/// Facts about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Digest of the uncompressed tar stream (the layer's diff id).
    pub diff_id: Digest,
    /// Entries processed.
    pub entries: u64,
    /// Bytes of file content written.
    pub file_bytes: u64,
    /// Uncompressed stream length.
    pub tar_bytes: u64,
    /// Device nodes left out under [`DevicePolicy::Skip`].
    pub skipped_devices: u64,
}

/// Compression of a layer stream, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// Recognises the compression from magic bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `input` in the decompressor its magic bytes call for.
pub(crate) fn decompress<'a, R: BufRead + 'a>(mut input: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

/// Unpacks the layer stream `input` (compressed or not) into the existing empty directory
/// `dest`. `layer` names the layer in errors. Returns the diff id and counts; the caller checks
/// the diff id against the image config.
pub fn unpack_layer(
    input: impl BufRead,
    dest: &Path,
    layer: &str,
    policy: &UnpackPolicy,
) -> Result<UnpackStats> {
    let guard = Rc::new(StreamGuard::new(policy.max_bytes));
    let decompressed = decompress(input).map_err(|source| ImageError::CorruptLayer {
        layer: layer.to_owned(),
        source,
    })?;
    let mut stream = GuardedReader {
        inner: decompressed,
        guard: guard.clone(),
    };
    let mut unpacker = Unpacker::new(dest, layer, policy)?;
    let result = unpacker.run(&mut stream, &guard);
    let stats = match result {
        Ok(()) => {
            // The diff id covers the whole stream, also what follows the end-of-archive blocks.
            io::copy(&mut stream, &mut io::sink()).map_err(|e| guard.error(layer, e))?;
            unpacker.finish()?;
            UnpackStats {
                diff_id: guard.hasher.take().finish(),
                entries: unpacker.entries,
                file_bytes: unpacker.file_bytes,
                tar_bytes: guard.total.get(),
                skipped_devices: unpacker.skipped_devices,
            }
        }
        Err(error) => return Err(error),
    };
    Ok(stats)
}

/// Shared between the reader handed to the tar parser and its user: counts and hashes the
/// uncompressed stream and enforces the byte limits while the tar parser reads.
pub(crate) struct StreamGuard {
    total: Cell<u64>,
    max_total: u64,
    /// Reads past this position fail (set while the parser reads the headers of one entry).
    stop_at: Cell<u64>,
    tripped: Cell<Option<LimitKind>>,
    hasher: RefCell<Hasher>,
}

#[derive(Debug, Clone, Copy)]
enum LimitKind {
    Total,
    Header,
}

impl StreamGuard {
    /// A guard failing reads beyond `max_total` bytes.
    pub(crate) fn new(max_total: u64) -> Self {
        StreamGuard {
            total: Cell::new(0),
            max_total,
            stop_at: Cell::new(u64::MAX),
            tripped: Cell::new(None),
            hasher: RefCell::new(Hasher::default()),
        }
    }

    /// Lets the next reads (the headers of one entry) take at most `budget` more bytes, on top
    /// of the padding of the previous entry and one header block.
    pub(crate) fn limit_headers(&self, budget: u64) {
        self.stop_at
            .set(self.total.get().saturating_add(budget.saturating_add(1024)));
    }

    /// Lifts the header limit (while entry content is read).
    pub(crate) fn unlimit_headers(&self) {
        self.stop_at.set(u64::MAX);
    }

    /// Turns a read error into the layer error it stands for.
    fn error(&self, layer: &str, source: io::Error) -> ImageError {
        match self.tripped.get() {
            Some(LimitKind::Total) => ImageError::LayerLimit {
                layer: layer.to_owned(),
                reason: format!(
                    "uncompressed content exceeds the limit of {} bytes (decompression bomb?)",
                    self.max_total
                ),
            },
            Some(LimitKind::Header) => ImageError::LayerLimit {
                layer: layer.to_owned(),
                reason: "an entry's extension headers (long name or PAX records) exceed the limit"
                    .to_owned(),
            },
            None => ImageError::CorruptLayer {
                layer: layer.to_owned(),
                source,
            },
        }
    }
}

/// A reader counted, hashed and limited by a [`StreamGuard`].
pub(crate) struct GuardedReader<R> {
    inner: R,
    guard: Rc<StreamGuard>,
}

impl<R> GuardedReader<R> {
    pub(crate) fn new(inner: R, guard: Rc<StreamGuard>) -> Self {
        GuardedReader { inner, guard }
    }
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let guard = &self.guard;
        // Never hand out more than the limits allow, so nothing beyond them is buffered either.
        let limit = guard.max_total.min(guard.stop_at.get());
        let room = limit.saturating_sub(guard.total.get());
        if room == 0 && !buf.is_empty() {
            // Allow detecting a clean end of stream exactly at the limit.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    let kind = if guard.stop_at.get() < guard.max_total {
                        LimitKind::Header
                    } else {
                        LimitKind::Total
                    };
                    guard.tripped.set(Some(kind));
                    Err(io::Error::other("layer limit exceeded"))
                }
            };
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        guard.hasher.borrow_mut().update(&buf[..n]);
        guard.total.set(guard.total.get() + n as u64);
        Ok(n)
    }
}

/// Metadata applied to a directory once all its entries are written.
struct DeferredDir {
    path: Vec<Vec<u8>>,
    meta: Meta,
}

#[derive(Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'p> {
    root: OwnedFd,
    root_path: PathBuf,
    layer: String,
    policy: &'p UnpackPolicy,
    as_root: bool,
    /// The last parent directory opened, by path, to avoid re-walking for sibling entries.
    cached_parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
    dirs: Vec<DeferredDir>,
    root_meta: Option<Meta>,
    entries: u64,
    file_bytes: u64,
    skipped_devices: u64,
    current: String,
}

/// An entry error before it is tied to the layer and entry name.
enum EntryError {
    Unsafe(UnsafeEntry),
    Io(&'static str, io::Error),
}

impl From<UnsafeEntry> for EntryError {
    fn from(reason: UnsafeEntry) -> Self {
        EntryError::Unsafe(reason)
    }
}

fn sys(action: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |errno| EntryError::Io(action, errno.into())
}

impl<'p> Unpacker<'p> {
    fn new(dest: &Path, layer: &str, policy: &'p UnpackPolicy) -> Result<Self> {
        let root = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io("open", dest, e.into()))?;
        Ok(Unpacker {
            root,
            root_path: dest.to_path_buf(),
            layer: layer.to_owned(),
            policy,
            as_root: rustix::process::geteuid().is_root(),
            cached_parent: None,
            dirs: Vec::new(),
            root_meta: None,
            entries: 0,
            file_bytes: 0,
            skipped_devices: 0,
            current: String::new(),
        })
    }

    fn wrap(&self, error: EntryError) -> ImageError {
        match error {
            EntryError::Unsafe(reason) => ImageError::UnsafeLayerEntry {
                layer: self.layer.clone(),
                entry: self.current.clone(),
                reason,
            },
            EntryError::Io(action, source) => ImageError::Unpack {
                layer: self.layer.clone(),
                entry: self.current.clone(),
                action,
                source,
            },
        }
    }

    fn run<R: Read>(&mut self, stream: &mut R, guard: &StreamGuard) -> Result<()> {
        let mut archive = tar::Archive::new(stream);
        let mut entries = archive.entries().map_err(|e| guard.error(&self.layer, e))?;
        loop {
            guard.limit_headers(self.policy.max_header_bytes);
            let next = entries.next();
            guard.unlimit_headers();
            let Some(entry) = next else {
                return Ok(());
            };
            let mut entry = entry.map_err(|e| guard.error(&self.layer, e))?;
            self.entries += 1;
            self.current = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if self.entries > self.policy.max_entries {
                return Err(ImageError::LayerLimit {
                    layer: self.layer.clone(),
                    reason: format!("more than {} entries", self.policy.max_entries),
                });
            }
            if let Err(error) = self.entry(&mut entry) {
                return Err(match error {
                    // A read of the entry's content hit a stream limit.
                    EntryError::Io(_, source) if guard.tripped.get().is_some() => {
                        guard.error(&self.layer, source)
                    }
                    error => self.wrap(error),
                });
            }
            // Consume what the entry did not (data of skipped entries) before the next header.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| guard.error(&self.layer, e))?;
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), EntryError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Global PAX records carry nothing a layer needs; the data is skipped (and counted).
            return Ok(());
        }
        let raw_path = entry.path_bytes().into_owned();
        let path = split_path(&raw_path)?;
        let meta = self.meta(entry)?;

        let Some((name, parents)) = path.split_last() else {
            if !kind.is_dir() {
                return Err(UnsafeEntry::RootNotDirectory.into());
            }
            self.root_meta = Some(meta);
            return Ok(());
        };
        let name = name.clone();
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            return self.whiteout(parents, hidden);
        }

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.regular(entry, parents, &name, &meta)
            }
            tar::EntryType::Directory => self.directory(&path, meta),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(UnsafeEntry::MissingLinkTarget)?
                    .into_owned();
                self.symlink(parents, &name, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(UnsafeEntry::MissingLinkTarget)?
                    .into_owned();
                self.hardlink(&path, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block => match self.policy.devices {
                DevicePolicy::Skip => {
                    tracing::warn!(layer = %self.layer, entry = %self.current, "device node left out of the layer");
                    self.skipped_devices += 1;
                    Ok(())
                }
                DevicePolicy::Refuse => Err(UnsafeEntry::DeviceNode.into()),
            },
            tar::EntryType::Fifo => {
                let parent = self.open_parent(parents)?;
                self.remove_existing(&parent, parents, &name)?;
                rustix::fs::mknodat(
                    &parent,
                    name.as_slice(),
                    FileType::Fifo,
                    Mode::from_raw_mode(meta.mode),
                    0,
                )
                .map_err(sys("create fifo"))?;
                self.apply_at(&parent, &name, &meta)
            }
            other => Err(UnsafeEntry::UnsupportedType {
                kind: other.as_byte(),
            }
            .into()),
        }
    }

    /// Mode, owner, times and allowed extended attributes of an entry, with the set-id policy
    /// applied.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta, EntryError> {
        let header = entry.header();
        let mut mode = header.mode().map_err(|e| EntryError::Io("read mode", e))? & 0o7777;
        let uid = header.uid().map_err(|e| EntryError::Io("read uid", e))?;
        let gid = header.gid().map_err(|e| EntryError::Io("read gid", e))?;
        let mtime = header.mtime().unwrap_or(0);
        let owner = |id: u64| match u32::try_from(id) {
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(UnsafeEntry::InvalidOwner { id }),
        };
        let (uid, gid) = (owner(uid)?, owner(gid)?);
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry
            .pax_extensions()
            .map_err(|e| EntryError::Io("read PAX records", e))?
        {
            for extension in extensions {
                let extension = extension.map_err(|e| EntryError::Io("read PAX records", e))?;
                let Some(name) = extension
                    .key()
                    .ok()
                    .and_then(|k| k.strip_prefix("SCHILY.xattr."))
                else {
                    continue;
                };
                if name.starts_with("user.") || name == "security.capability" {
                    xattrs.push((name.to_owned(), extension.value_bytes().to_vec()));
                } else {
                    tracing::debug!(layer = %self.layer, entry = %self.current, xattr = name, "extended attribute ignored");
                }
            }
        }
        let has_caps = xattrs.iter().any(|(n, _)| n == "security.capability");
        if mode & 0o6000 != 0 || has_caps {
            match self.policy.setid {
                SetidPolicy::Keep => {}
                SetidPolicy::Strip => {
                    mode &= !0o6000;
                    xattrs.retain(|(n, _)| n != "security.capability");
                }
                SetidPolicy::Refuse => return Err(UnsafeEntry::Setid { mode }.into()),
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime: i64::try_from(mtime).unwrap_or(0),
            xattrs,
        })
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parents: &[Vec<u8>],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), EntryError> {
        let size = entry.size();
        let limit = self.policy.max_bytes;
        if size > limit.saturating_sub(self.file_bytes) {
            return Err(UnsafeEntry::TooLarge { size, limit }.into());
        }
        let parent = self.open_parent(parents)?;
        self.remove_existing(&parent, parents, name)?;
        let fd = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(sys("create file"))?;
        let mut file = File::from(fd);
        let mut buf = vec![
            0u8;
            COPY_BUFFER
                .min(usize::try_from(size).unwrap_or(COPY_BUFFER))
                .max(1)
        ];
        let mut written = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| EntryError::Io("read content", e))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .map_err(|e| EntryError::Io("write file", e))?;
            written += n as u64;
        }
        self.file_bytes += written;
        self.apply_fd(&file, meta)
    }

    fn directory(&mut self, path: &[Vec<u8>], meta: Meta) -> Result<(), EntryError> {
        let (name, parents) = path.split_last().ok_or(UnsafeEntry::RootNotDirectory)?;
        let parent = self.open_parent(parents)?;
        match rustix::fs::statat(&parent, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {}
            Ok(_) => {
                self.remove_existing(&parent, parents, name)?;
                mkdir(&parent, name)?;
            }
            Err(Errno::NOENT) => mkdir(&parent, name)?,
            Err(e) => return Err(sys("inspect")(e)),
        }
        self.dirs.push(DeferredDir {
            path: path.to_vec(),
            meta,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        parents: &[Vec<u8>],
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), EntryError> {
        // The target is only text: it is never followed here, and resolves inside the
        // container's root when the container uses it.
        if target.contains(&0) {
            return Err(UnsafeEntry::NulByte.into());
        }
        if target.len() > PATH_MAX {
            return Err(UnsafeEntry::PathTooLong { len: target.len() }.into());
        }
        let parent = self.open_parent(parents)?;
        self.remove_existing(&parent, parents, name)?;
        rustix::fs::symlinkat(target, &parent, name).map_err(sys("create symlink"))?;
        self.apply_at(&parent, name, meta)
    }

    fn hardlink(&mut self, path: &[Vec<u8>], raw_target: &[u8]) -> Result<(), EntryError> {
        let target_text = String::from_utf8_lossy(raw_target).into_owned();
        let bad = |problem: &str| {
            EntryError::Unsafe(UnsafeEntry::HardlinkTarget {
                target: target_text.clone(),
                problem: problem.to_owned(),
            })
        };
        let target = match split_path(raw_target) {
            Ok(target) => target,
            Err(UnsafeEntry::ParentDirectory) | Err(UnsafeEntry::AbsolutePath) => {
                return Err(bad("points outside the layer"))
            }
            Err(other) => return Err(other.into()),
        };
        if target == path {
            return Ok(());
        }
        let (target_name, target_parents) = target
            .split_last()
            .ok_or_else(|| bad("is the layer root"))?;
        let target_parent = match self.walk(target_parents, false) {
            Ok(fd) => fd,
            Err(EntryError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => {
                return Err(bad("does not exist in the layer"))
            }
            Err(EntryError::Unsafe(UnsafeEntry::ThroughSymlink { .. })) => {
                return Err(bad("passes through a symlink"))
            }
            Err(other) => return Err(other),
        };
        match rustix::fs::statat(
            &target_parent,
            target_name.as_slice(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(bad("is a directory"))
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(bad("does not exist in the layer")),
            Err(e) => return Err(sys("inspect link target")(e)),
        }
        let (name, parents) = path.split_last().ok_or(UnsafeEntry::RootNotDirectory)?;
        let parent = self.open_parent(parents)?;
        self.remove_existing(&parent, parents, name)?;
        rustix::fs::linkat(
            &target_parent,
            target_name.as_slice(),
            &parent,
            name.as_slice(),
            AtFlags::empty(),
        )
        .map_err(sys("create hard link"))
    }

    fn whiteout(&mut self, parents: &[Vec<u8>], hidden: &[u8]) -> Result<(), EntryError> {
        if hidden == b".wh..opq" {
            let dir = self.walk(parents, true)?;
            return rustix::fs::fsetxattr(
                &dir,
                "trusted.overlay.opaque",
                b"y",
                XattrFlags::empty(),
            )
            .map_err(sys("mark directory opaque (needs root)"));
        }
        if hidden.starts_with(b".wh.") {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) has no meaning for overlayfs.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnsafeEntry::ParentDirectory.into());
        }
        let parent = self.open_parent(parents)?;
        self.remove_existing(&parent, parents, hidden)?;
        rustix::fs::mknodat(
            &parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(sys("create whiteout (needs root)"))
    }

    /// Removes whatever `name` is in `parent` (a directory with its content).
    fn remove_existing(
        &mut self,
        parent: &OwnedFd,
        parents: &[Vec<u8>],
        name: &[u8],
    ) -> Result<(), EntryError> {
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(sys("inspect")(e)),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            // The parents were just opened without following symlinks and nothing else writes
            // into the layer, so this path names the same directory.
            let mut full = self.root_path.clone();
            for component in parents.iter().chain(std::iter::once(&name.to_vec())) {
                full.push(std::ffi::OsStr::from_bytes(component));
            }
            crate::tmp::remove_tree(&full).map_err(|e| EntryError::Io("replace directory", e))?;
            self.cached_parent = None;
            let prefix: Vec<Vec<u8>> = parents.iter().cloned().chain([name.to_vec()]).collect();
            self.dirs.retain(|d| !d.path.starts_with(&prefix));
            Ok(())
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(sys("replace"))
        }
    }

    /// Opens (creating missing directories) the parent directory of an entry.
    fn open_parent(&mut self, parents: &[Vec<u8>]) -> Result<OwnedFd, EntryError> {
        if let Some((path, fd)) = &self.cached_parent {
            if path.as_slice() == parents {
                return fd.try_clone().map_err(|e| EntryError::Io("open", e));
            }
        }
        let fd = self.walk(parents, true)?;
        let copy = fd.try_clone().map_err(|e| EntryError::Io("open", e))?;
        self.cached_parent = Some((parents.to_vec(), copy));
        Ok(fd)
    }

    /// Opens the directory `path` below the root one component at a time, never following a
    /// symlink; with `create`, missing directories are made (mode 0755, root-owned).
    fn walk(&self, path: &[Vec<u8>], create: bool) -> Result<OwnedFd, EntryError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir =
            rustix::fs::openat(&self.root, ".", flags, Mode::empty()).map_err(sys("open"))?;
        for (i, component) in path.iter().enumerate() {
            let shown = || {
                path[..=i]
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let next = match rustix::fs::openat(&dir, component.as_slice(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    mkdir(&dir, component)?;
                    rustix::fs::chmodat(
                        &dir,
                        component.as_slice(),
                        Mode::from_raw_mode(0o755),
                        AtFlags::empty(),
                    )
                    .map_err(sys("create directory"))?;
                    rustix::fs::openat(&dir, component.as_slice(), flags, Mode::empty())
                        .map_err(sys("open"))?
                }
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    let stat =
                        rustix::fs::statat(&dir, component.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(sys("inspect"))?;
                    return Err(
                        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                            UnsafeEntry::ThroughSymlink { component: shown() }
                        } else {
                            UnsafeEntry::NotADirectory { component: shown() }
                        }
                        .into(),
                    );
                }
                Err(e) => return Err(sys("open")(e)),
            };
            dir = next;
        }
        Ok(dir)
    }

    /// Owner, mode, extended attributes and mtime of a file through its descriptor.
    fn apply_fd(&self, fd: impl AsFd, meta: &Meta) -> Result<(), EntryError> {
        let fd = fd.as_fd();
        if self.as_root {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            )
            .map_err(sys("set owner"))?;
        }
        // After chown, which clears setuid bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(sys("set mode"))?;
        for (name, value) in &meta.xattrs {
            rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())
                .map_err(sys("set extended attribute"))?;
        }
        rustix::fs::futimens(fd, &times(meta.mtime)).map_err(sys("set times"))
    }

    /// Owner and mtime of a non-regular entry (symlink, fifo) by name, without following it.
    fn apply_at(&self, parent: &OwnedFd, name: &[u8], meta: &Meta) -> Result<(), EntryError> {
        if self.as_root {
            rustix::fs::chownat(
                parent,
                name,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(sys("set owner"))?;
        }
        rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(sys("set times"))
    }

    /// Applies the deferred directory metadata, deepest directories first, then the root's.
    fn finish(&mut self) -> Result<()> {
        self.cached_parent = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        for dir in dirs {
            self.current = dir
                .path
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let fd = self.walk(&dir.path, false).map_err(|e| self.wrap(e))?;
            self.apply_fd(&fd, &dir.meta).map_err(|e| self.wrap(e))?;
        }
        if let Some(meta) = self.root_meta.take() {
            self.current = ".".into();
            let fd = self.walk(&[], false).map_err(|e| self.wrap(e))?;
            self.apply_fd(&fd, &meta).map_err(|e| self.wrap(e))?;
        }
        Ok(())
    }
}

fn mkdir(parent: &OwnedFd, name: &[u8]) -> Result<(), EntryError> {
    // Owner-only until the entry's own mode is applied at the end.
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(sys("create directory"))
}

fn times(mtime: i64) -> Timestamps {
    let at = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

/// Splits an entry path into its components, refusing what could leave the layer.
fn split_path(raw: &[u8]) -> Result<Vec<Vec<u8>>, UnsafeEntry> {
    if raw.contains(&0) {
        return Err(UnsafeEntry::NulByte);
    }
    if raw.len() > PATH_MAX {
        return Err(UnsafeEntry::PathTooLong { len: raw.len() });
    }
    if raw.starts_with(b"/") {
        return Err(UnsafeEntry::AbsolutePath);
    }
    let mut components = Vec::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(UnsafeEntry::ParentDirectory),
            name if name.len() > NAME_MAX => {
                return Err(UnsafeEntry::NameTooLong { len: name.len() })
            }
            name => components.push(name.to_vec()),
        }
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths_and_refuses_escapes() {
        assert_eq!(
            split_path(b"./a//b/./c/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(split_path(b"./").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split_path(b"a/../b"), Err(UnsafeEntry::ParentDirectory));
        assert_eq!(split_path(b"/etc/passwd"), Err(UnsafeEntry::AbsolutePath));
        assert_eq!(split_path(b"a\0b"), Err(UnsafeEntry::NulByte));
        let long = vec![b'x'; 256];
        assert_eq!(
            split_path(&long),
            Err(UnsafeEntry::NameTooLong { len: 256 })
        );
    }

    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o640);
        header.set_size(5);
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "dir/file", &b"hello"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn unpacks_plain_gzip_and_zstd_streams_with_the_same_diff_id() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tar = sample_tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
        for (name, stream) in [("plain", tar.clone()), ("gzip", gz), ("zstd", zst)] {
            let dir = tempfile::tempdir().unwrap();
            let stats =
                unpack_layer(&stream[..], dir.path(), name, &UnpackPolicy::default()).unwrap();
            assert_eq!(stats.diff_id, Digest::of(&tar), "{name}");
            assert_eq!((stats.entries, stats.file_bytes), (1, 5), "{name}");
            let file = dir.path().join("dir/file");
            assert_eq!(std::fs::read(&file).unwrap(), b"hello", "{name}");
            let meta = std::fs::metadata(&file).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "{name}");
            assert_eq!(meta.mtime(), 1_600_000_000, "{name}");
        }
    }

    #[test]
    fn detects_compression() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
    }
}

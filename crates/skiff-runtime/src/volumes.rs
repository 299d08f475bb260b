//! Pod volumes: emptyDir on disk or tmpfs, hostPath with type checks, and configMap, secret,
//! downwardAPI and projected volumes written as files from data the caller supplies; and the
//! containers' volumeMounts (subPath, readOnly, propagation) as OCI bind mounts.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeMount,
};
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use crate::error::{Result, RuntimeError};
use crate::fsutil::unmount_all_under;
use crate::inputs::PodInputs;
use crate::spec::env::{expand, EnvList};
use crate::spec::fieldref::{field_value, resource_value, PodFacts};
use crate::subpath::SubpathBind;

/// Default file mode of configMap, secret, downwardAPI and projected files (0644).
const DEFAULT_MODE: u32 = 0o644;

/// A volume ready to be bound into containers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedVolume {
    pub name: String,
    /// Host path that is bind-mounted.
    pub path: PathBuf,
    /// Always mounted read-only (API-data volumes).
    pub read_only: bool,
}

/// One file of an API-data volume.
struct DataFile {
    rel: String,
    data: Vec<u8>,
    mode: u32,
}

fn check_rel_path(rel: &str, field: &str) -> Result<()> {
    let p = Path::new(rel);
    if rel.is_empty()
        || p.is_absolute()
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(RuntimeError::invalid(
            field,
            format!("path {rel:?} must be relative and must not contain '..'"),
        ));
    }
    Ok(())
}

fn mode_of(mode: Option<i32>, default: u32, field: &str) -> Result<u32> {
    match mode {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
        Some(m) => Err(RuntimeError::invalid(
            field,
            format!("mode {m:o} must be between 0 and 0777"),
        )),
    }
}

fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    kind: &'static str,
    name: &str,
    field: &str,
) -> Result<Vec<DataFile>> {
    let mut out = Vec::new();
    match items {
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{field}.items[{i}]");
                check_rel_path(&item.path, &format!("{at}.path"))?;
                let value = data
                    .get(&item.key)
                    .ok_or_else(|| RuntimeError::MissingInput {
                        kind,
                        name: format!("{name}/{}", item.key),
                        field: format!("{at}.key"),
                    })?;
                out.push(DataFile {
                    rel: item.path.clone(),
                    data: value.clone(),
                    mode: mode_of(item.mode, default_mode, &format!("{at}.mode"))?,
                });
            }
        }
        None => {
            for (k, v) in data {
                check_rel_path(k, &format!("{field} key {k:?}"))?;
                out.push(DataFile {
                    rel: k.clone(),
                    data: v.clone(),
                    mode: default_mode,
                });
            }
        }
    }
    Ok(out)
}

fn config_map_data(inputs: &PodInputs, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let cm = inputs.config_maps.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    Some(data)
}

fn secret_data(inputs: &PodInputs, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let s = inputs.secrets.get(name)?;
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    Some(data)
}

fn downward_files(
    pod: &Pod,
    facts: &PodFacts<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    field: &str,
) -> Result<Vec<DataFile>> {
    let mut out = Vec::new();
    let first = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}.items[{i}]");
        check_rel_path(&item.path, &format!("{at}.path"))?;
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, facts, f, &format!("{at}.fieldRef"), true)?
        } else if let Some(r) = &item.resource_field_ref {
            if r.container_name.as_deref().unwrap_or("").is_empty() {
                return Err(RuntimeError::invalid(
                    format!("{at}.resourceFieldRef.containerName"),
                    "required in volumes",
                ));
            }
            resource_value(
                pod,
                &first,
                facts.node,
                r,
                &format!("{at}.resourceFieldRef"),
            )?
        } else {
            return Err(RuntimeError::invalid(
                &at,
                "must set fieldRef or resourceFieldRef",
            ));
        };
        out.push(DataFile {
            rel: item.path.clone(),
            data: value.into_bytes(),
            mode: mode_of(item.mode, default_mode, &format!("{at}.mode"))?,
        });
    }
    Ok(out)
}

fn write_files(dir: &Path, files: &[DataFile]) -> Result<()> {
    for f in files {
        let path = dir.join(&f.rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io("create", parent, e))?;
        }
        std::fs::write(&path, &f.data).map_err(|e| RuntimeError::io("write", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
            .map_err(|e| RuntimeError::io("chmod", &path, e))?;
    }
    Ok(())
}

fn mount_tmpfs(dir: &Path, size: Option<i64>, mode: u32) -> Result<()> {
    let mut data = format!("mode={mode:o}");
    if let Some(size) = size.filter(|s| *s > 0) {
        data.push_str(&format!(",size={size}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| RuntimeError::sys("mount tmpfs", dir.display(), e))
}

/// Gives the fsGroup group ownership of everything in `dir` (kubelet `SetVolumeOwnership`).
fn set_ownership(dir: &Path, gid: u32, read_only: bool) -> Result<()> {
    let (file_bits, dir_bits) = if read_only {
        (0o440, 0o2550)
    } else {
        (0o660, 0o2770)
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| RuntimeError::io("stat", &p, e))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        nix::unistd::chown(&p, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| RuntimeError::sys("chown", p.display(), e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let bits = if meta.is_dir() { dir_bits } else { file_bits };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | bits))
            .map_err(|e| RuntimeError::io("chmod", &p, e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)
                .map_err(|e| RuntimeError::io("read dir", &p, e))?
                .flatten()
            {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

fn check_host_path(path: &Path, typ: &str, field: &str) -> Result<()> {
    let meta = std::fs::metadata(path);
    let err = |what: &str| {
        RuntimeError::invalid(
            format!("{field}.hostPath"),
            format!("{} {what}", path.display()),
        )
    };
    match typ {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(|e| RuntimeError::io("create", path, e))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| RuntimeError::io("chmod", path, e))?;
                return Ok(());
            }
            if meta.map(|m| m.is_dir()).unwrap_or(false) {
                Ok(())
            } else {
                Err(err("exists and is not a directory"))
            }
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(err("is not a directory")),
            Err(_) => Err(err("does not exist")),
        },
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| RuntimeError::io("create", parent, e))?;
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .map_err(|e| RuntimeError::io("create", path, e))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| RuntimeError::io("chmod", path, e))?;
                return Ok(());
            }
            if meta.map(|m| m.is_file()).unwrap_or(false) {
                Ok(())
            } else {
                Err(err("exists and is not a file"))
            }
        }
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(err("is not a file")),
            Err(_) => Err(err("does not exist")),
        },
        "Socket" | "CharDevice" | "BlockDevice" => {
            let m = meta.map_err(|_| err("does not exist"))?;
            let ft = m.file_type();
            let ok = match typ {
                "Socket" => ft.is_socket(),
                "CharDevice" => ft.is_char_device(),
                _ => ft.is_block_device(),
            };
            if ok {
                Ok(())
            } else {
                Err(err(&format!("is not a {typ}")))
            }
        }
        other => Err(RuntimeError::invalid(
            format!("{field}.hostPath.type"),
            format!("unknown type {other:?}"),
        )),
    }
}

/// What a pod's volumes need besides the pod object.
pub(crate) struct VolumeContext<'a> {
    pub pod: &'a Pod,
    pub inputs: &'a PodInputs,
    pub facts: &'a PodFacts<'a>,
    /// `<pod dir>/volumes`.
    pub root: &'a Path,
    /// Pod memory limit (size of memory-backed emptyDirs without a sizeLimit).
    pub pod_memory_limit: Option<i64>,
}

/// Checks that every volume is of a supported kind before anything is created.
pub(crate) fn validate(pod: &Pod) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .enumerate()
    {
        let field = format!("spec.volumes[{i}]");
        if !seen.insert(v.name.as_str()) {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("duplicate volume name {:?}", v.name),
            ));
        }
        if v.name.is_empty() || v.name.contains('/') || v.name == "." || v.name == ".." {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("invalid volume name {:?}", v.name),
            ));
        }
        let supported = v.empty_dir.is_some()
            || v.host_path.is_some()
            || v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        if !supported {
            return Err(RuntimeError::unsupported(
                &field,
                format!("volume {:?} is of a type skiff does not support (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)", v.name),
            ));
        }
    }
    Ok(())
}

/// Creates every volume of the pod under `ctx.root`.
pub(crate) fn prepare(ctx: &VolumeContext<'_>) -> Result<Vec<PreparedVolume>> {
    let mut out = Vec::new();
    std::fs::create_dir_all(ctx.root).map_err(|e| RuntimeError::io("create", ctx.root, e))?;
    let fs_group = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .map(|g| {
            u32::try_from(g).map_err(|_| {
                RuntimeError::invalid(
                    "spec.securityContext.fsGroup",
                    format!("{g} is not a valid group id"),
                )
            })
        })
        .transpose()?;
    for (i, v) in ctx
        .pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .enumerate()
    {
        out.push(prepare_one(
            ctx,
            v,
            &format!("spec.volumes[{i}]"),
            fs_group,
        )?);
    }
    Ok(out)
}

fn prepare_one(
    ctx: &VolumeContext<'_>,
    v: &Volume,
    field: &str,
    fs_group: Option<u32>,
) -> Result<PreparedVolume> {
    let dir = ctx.root.join(&v.name);
    let mkdir = |mode: u32| -> Result<()> {
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io("create", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| RuntimeError::io("chmod", &dir, e))
    };
    if let Some(ed) = &v.empty_dir {
        mkdir(0o777)?;
        if ed.medium.as_deref() == Some("Memory") {
            let size = match &ed.size_limit {
                Some(q) => Some(
                    crate::quantity::parse_field(&format!("{field}.emptyDir.sizeLimit"), q)?
                        .value(),
                ),
                None => ctx.pod_memory_limit,
            };
            mount_tmpfs(&dir, size, 0o777)?;
        } else if let Some(m) = ed.medium.as_deref().filter(|m| !m.is_empty()) {
            return Err(RuntimeError::unsupported(
                format!("{field}.emptyDir.medium"),
                format!("medium {m:?}"),
            ));
        }
        if let Some(gid) = fs_group {
            set_ownership(&dir, gid, false)?;
        }
        return Ok(PreparedVolume {
            name: v.name.clone(),
            path: dir,
            read_only: false,
        });
    }
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        if !path.is_absolute() {
            return Err(RuntimeError::invalid(
                format!("{field}.hostPath.path"),
                "must be an absolute path",
            ));
        }
        check_host_path(&path, hp.type_.as_deref().unwrap_or(""), field)?;
        return Ok(PreparedVolume {
            name: v.name.clone(),
            path,
            read_only: false,
        });
    }

    // API-data volumes: files written from the inputs, mounted read-only.
    let mut files = Vec::new();
    let mut on_tmpfs = false;
    if let Some(cm) = &v.config_map {
        let at = format!("{field}.configMap");
        let default_mode = mode_of(cm.default_mode, DEFAULT_MODE, &format!("{at}.defaultMode"))?;
        match config_map_data(ctx.inputs, &cm.name) {
            Some(data) => {
                files = key_files(
                    &data,
                    cm.items.as_ref(),
                    default_mode,
                    "configmap key",
                    &cm.name,
                    &at,
                )?
            }
            None if cm.optional == Some(true) => {}
            None => {
                return Err(RuntimeError::MissingInput {
                    kind: "configmap",
                    name: cm.name.clone(),
                    field: at,
                })
            }
        }
    } else if let Some(s) = &v.secret {
        let at = format!("{field}.secret");
        let name = s.secret_name.clone().unwrap_or_default();
        let default_mode = mode_of(s.default_mode, DEFAULT_MODE, &format!("{at}.defaultMode"))?;
        on_tmpfs = true;
        match secret_data(ctx.inputs, &name) {
            Some(data) => {
                files = key_files(
                    &data,
                    s.items.as_ref(),
                    default_mode,
                    "secret key",
                    &name,
                    &at,
                )?
            }
            None if s.optional == Some(true) => {}
            None => {
                return Err(RuntimeError::MissingInput {
                    kind: "secret",
                    name,
                    field: at,
                })
            }
        }
    } else if let Some(d) = &v.downward_api {
        let at = format!("{field}.downwardAPI");
        let default_mode = mode_of(d.default_mode, DEFAULT_MODE, &format!("{at}.defaultMode"))?;
        files = downward_files(
            ctx.pod,
            ctx.facts,
            d.items.as_deref().unwrap_or(&[]),
            default_mode,
            &at,
        )?;
    } else if let Some(p) = &v.projected {
        let at = format!("{field}.projected");
        let default_mode = mode_of(p.default_mode, DEFAULT_MODE, &format!("{at}.defaultMode"))?;
        on_tmpfs = true;
        for (j, src) in p.sources.iter().flatten().enumerate() {
            let sat = format!("{at}.sources[{j}]");
            if let Some(cm) = &src.config_map {
                let name = cm.name.clone();
                match config_map_data(ctx.inputs, &name) {
                    Some(data) => files.extend(key_files(
                        &data,
                        cm.items.as_ref(),
                        default_mode,
                        "configmap key",
                        &name,
                        &format!("{sat}.configMap"),
                    )?),
                    None if cm.optional == Some(true) => {}
                    None => {
                        return Err(RuntimeError::MissingInput {
                            kind: "configmap",
                            name,
                            field: format!("{sat}.configMap"),
                        })
                    }
                }
            } else if let Some(s) = &src.secret {
                let name = s.name.clone();
                match secret_data(ctx.inputs, &name) {
                    Some(data) => files.extend(key_files(
                        &data,
                        s.items.as_ref(),
                        default_mode,
                        "secret key",
                        &name,
                        &format!("{sat}.secret"),
                    )?),
                    None if s.optional == Some(true) => {}
                    None => {
                        return Err(RuntimeError::MissingInput {
                            kind: "secret",
                            name,
                            field: format!("{sat}.secret"),
                        })
                    }
                }
            } else if let Some(d) = &src.downward_api {
                files.extend(downward_files(
                    ctx.pod,
                    ctx.facts,
                    d.items.as_deref().unwrap_or(&[]),
                    default_mode,
                    &format!("{sat}.downwardAPI"),
                )?);
            } else if let Some(t) = &src.service_account_token {
                check_rel_path(&t.path, &format!("{sat}.serviceAccountToken.path"))?;
                let audience = t.audience.clone().unwrap_or_default();
                let token = ctx
                    .inputs
                    .service_account_tokens
                    .get(&audience)
                    .ok_or_else(|| RuntimeError::MissingInput {
                        kind: "service account token for audience",
                        name: audience.clone(),
                        field: format!("{sat}.serviceAccountToken"),
                    })?;
                files.push(DataFile {
                    rel: t.path.clone(),
                    data: token.clone().into_bytes(),
                    mode: default_mode,
                });
            } else {
                return Err(RuntimeError::unsupported(&sat, "only configMap, secret, downwardAPI and serviceAccountToken sources are supported"));
            }
        }
    }
    mkdir(0o755)?;
    if on_tmpfs {
        // Secrets never touch the disk.
        mount_tmpfs(&dir, None, 0o755)?;
    }
    write_files(&dir, &files)?;
    if let Some(gid) = fs_group {
        set_ownership(&dir, gid, true)?;
    }
    Ok(PreparedVolume {
        name: v.name.clone(),
        path: dir,
        read_only: true,
    })
}

/// The prepared volumes of a pod whose volumes already exist under `root` (no file system work).
pub(crate) fn existing(pod: &Pod, root: &Path) -> Vec<PreparedVolume> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| {
            if let Some(hp) = &v.host_path {
                PreparedVolume {
                    name: v.name.clone(),
                    path: PathBuf::from(&hp.path),
                    read_only: false,
                }
            } else {
                PreparedVolume {
                    name: v.name.clone(),
                    path: root.join(&v.name),
                    read_only: v.empty_dir.is_none(),
                }
            }
        })
        .collect()
}

/// Unmounts and removes every volume under `root` (hostPath volumes live elsewhere and stay).
pub(crate) fn teardown(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    unmount_all_under(root)?;
    std::fs::remove_dir_all(root).map_err(|e| RuntimeError::io("remove", root, e))
}

/// A container's volumeMounts: the OCI bind mounts, and the subPaths to bind (safely, per
/// instance, see `subpath`) at the places those mounts name as their source.
#[derive(Debug, Default)]
pub(crate) struct ContainerMounts {
    pub mounts: Vec<Mount>,
    pub subpaths: Vec<SubpathBind>,
}

/// Where a container's mounts come from.
pub(crate) struct MountSource<'a> {
    pub volumes: &'a [PreparedVolume],
    /// The pod directory (subPath binds live under it).
    pub pod_dir: &'a Path,
}

/// The container's volumeMounts as OCI bind mounts.
pub(crate) fn mounts_for(
    container: &Container,
    field: &str,
    source: &MountSource<'_>,
    privileged: bool,
    env: &EnvList,
) -> Result<ContainerMounts> {
    let mut mounts: Vec<(usize, Mount)> = Vec::new();
    let mut subpaths = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, vm) in container.volume_mounts.iter().flatten().enumerate() {
        let at = format!("{field}.volumeMounts[{i}]");
        let (mount, sub) = one_mount(vm, &at, (container, i), source, privileged, env, &mut seen)?;
        mounts.push((0, mount));
        subpaths.extend(sub);
    }
    for (depth, m) in &mut mounts {
        *depth = m.destination().components().count();
    }
    mounts.sort_by_key(|(d, _)| *d);
    Ok(ContainerMounts {
        mounts: mounts.into_iter().map(|(_, m)| m).collect(),
        subpaths,
    })
}

fn one_mount(
    vm: &VolumeMount,
    at: &str,
    (container, index): (&Container, usize),
    source: &MountSource<'_>,
    privileged: bool,
    env: &EnvList,
    seen: &mut std::collections::HashSet<String>,
) -> Result<(Mount, Option<SubpathBind>)> {
    let volumes = source.volumes;
    let volume = volumes.iter().find(|v| v.name == vm.name).ok_or_else(|| {
        RuntimeError::invalid(
            format!("{at}.name"),
            format!("no volume named {:?} in spec.volumes", vm.name),
        )
    })?;
    if !vm.mount_path.starts_with('/') {
        return Err(RuntimeError::invalid(
            format!("{at}.mountPath"),
            format!("{:?} must be an absolute path", vm.mount_path),
        ));
    }
    if Path::new(&vm.mount_path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(RuntimeError::invalid(
            format!("{at}.mountPath"),
            "must not contain '..'",
        ));
    }
    if !seen.insert(vm.mount_path.trim_end_matches('/').to_owned()) {
        return Err(RuntimeError::invalid(
            format!("{at}.mountPath"),
            format!("{:?} is mounted twice", vm.mount_path),
        ));
    }
    let sub = match (&vm.sub_path, &vm.sub_path_expr) {
        (Some(p), _) if !p.is_empty() => Some(p.clone()),
        (_, Some(expr)) if !expr.is_empty() => {
            let mapping = |name: &str| env.get(name).map(str::to_owned);
            Some(expand(expr, &mapping))
        }
        _ => None,
    };
    // A subPath is not resolved here: the source is a private place that `subpath::prepare`
    // binds the safely opened subPath at before each instance is created.
    let bind = match sub {
        Some(rel) => {
            let field = format!("{at}.subPath");
            check_rel_path(&rel, &field)?;
            Some(SubpathBind {
                volume: volume.name.clone(),
                container: container.name.clone(),
                field,
                volume_path: volume.path.clone(),
                sub_path: rel,
                target: crate::subpath::target(
                    source.pod_dir,
                    &volume.name,
                    &container.name,
                    index,
                ),
            })
        }
        None => None,
    };
    let host_source = bind
        .as_ref()
        .map_or_else(|| volume.path.clone(), |b| b.target.clone());
    let propagation = match vm.mount_propagation.as_deref() {
        None | Some("") | Some("None") => "rprivate",
        Some("HostToContainer") => "rslave",
        Some("Bidirectional") if privileged => "rshared",
        Some("Bidirectional") => {
            return Err(RuntimeError::invalid(
                format!("{at}.mountPropagation"),
                "Bidirectional requires a privileged container",
            ))
        }
        Some(other) => {
            return Err(RuntimeError::invalid(
                format!("{at}.mountPropagation"),
                format!("unknown mode {other:?}"),
            ))
        }
    };
    let read_only = volume.read_only || vm.read_only.unwrap_or(false);
    Ok((
        crate::spec::bind_mount(&host_source, &vm.mount_path, read_only, propagation),
        bind,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, PodSpec,
        Secret, SecretVolumeSource,
    };
    use k8s_openapi::ByteString;

    fn pod(volumes: Vec<Volume>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        p.spec = Some(PodSpec {
            volumes: Some(volumes),
            ..Default::default()
        });
        p
    }

    fn vol(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    fn prepare_in(dir: &Path, p: &Pod, inputs: &PodInputs) -> Result<Vec<PreparedVolume>> {
        validate(p)?;
        let facts = PodFacts::default();
        prepare(&VolumeContext {
            pod: p,
            inputs,
            facts: &facts,
            root: &dir.join("volumes"),
            pod_memory_limit: None,
        })
    }

    #[test]
    fn config_map_items_modes_and_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = PodInputs::default();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("app.conf".into(), "x=1".into()),
                ("other".into(), "y".into()),
            ])),
            ..Default::default()
        };
        inputs.config_maps.insert("cfg".into(), cm);
        let mut v = vol("conf");
        v.config_map = Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            items: Some(vec![KeyToPath {
                key: "app.conf".into(),
                path: "sub/app.conf".into(),
                mode: Some(0o600),
            }]),
            ..Default::default()
        });
        let prepared = prepare_in(dir.path(), &pod(vec![v.clone()]), &inputs).unwrap();
        let file = prepared[0].path.join("sub/app.conf");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x=1");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!prepared[0].path.join("other").exists());
        assert!(prepared[0].read_only);

        v.config_map.as_mut().unwrap().items.as_mut().unwrap()[0].key = "nope".into();
        let err = prepare_in(dir.path(), &pod(vec![v.clone()]), &inputs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cfg/nope") && err.contains("spec.volumes[0].configMap.items[0].key"),
            "{err}"
        );

        v.config_map.as_mut().unwrap().items.as_mut().unwrap()[0] = KeyToPath {
            key: "app.conf".into(),
            path: "../escape".into(),
            mode: None,
        };
        let err = prepare_in(dir.path(), &pod(vec![v]), &inputs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0].path"), "{err}");
        assert!(!dir.path().join("volumes/escape").exists());
    }

    #[test]
    fn missing_and_optional_sources() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vol("s");
        v.secret = Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            ..Default::default()
        });
        let err = prepare_in(dir.path(), &pod(vec![v.clone()]), &PodInputs::default()).unwrap_err();
        assert!(
            err.to_string().contains("secret \"creds\" not found"),
            "{err}"
        );
        assert!(err.is_config_error());
        let mut c = vol("c");
        c.config_map = Some(ConfigMapVolumeSource {
            name: "none".into(),
            optional: Some(true),
            ..Default::default()
        });
        let prepared = prepare_in(dir.path(), &pod(vec![c]), &PodInputs::default()).unwrap();
        assert!(prepared[0].path.is_dir());
    }

    #[test]
    fn unsupported_and_duplicate_volumes_are_rejected_up_front() {
        let mut v = vol("data");
        v.persistent_volume_claim = Some(Default::default());
        let err = validate(&pod(vec![v])).unwrap_err();
        assert!(matches!(err, RuntimeError::Unsupported { .. }), "{err}");
        let mut a = vol("a");
        a.empty_dir = Some(EmptyDirVolumeSource::default());
        assert!(validate(&pod(vec![a.clone(), a])).is_err());
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let hp = |path: &Path, typ: &str| {
            let mut v = vol("h");
            v.host_path = Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some(typ.into()),
            });
            pod(vec![v])
        };
        let inputs = PodInputs::default();
        assert!(prepare_in(dir.path(), &hp(&file, "File"), &inputs).is_ok());
        let err = prepare_in(dir.path(), &hp(&file, "Directory"), &inputs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.volumes[0].hostPath") && err.contains("not a directory"),
            "{err}"
        );
        let created = dir.path().join("new/dir");
        assert!(prepare_in(dir.path(), &hp(&created, "DirectoryOrCreate"), &inputs).is_ok());
        assert!(created.is_dir());
        assert!(prepare_in(
            dir.path(),
            &hp(&dir.path().join("missing"), "Socket"),
            &inputs
        )
        .is_err());
    }

    #[test]
    fn volume_mounts_resolve_subpaths_inside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = vol("data");
        e.empty_dir = Some(EmptyDirVolumeSource::default());
        let prepared = prepare_in(dir.path(), &pod(vec![e]), &PodInputs::default()).unwrap();
        // A symlink planted in the volume must not lead a subPath out of it.
        std::os::unix::fs::symlink("/etc", prepared[0].path.join("evil")).unwrap();
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/data/logs".into(),
                    sub_path: Some("logs".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let source = MountSource {
            volumes: &prepared,
            pod_dir: dir.path(),
        };
        let planned = mounts_for(
            &c,
            "spec.containers[0]",
            &source,
            false,
            &EnvList::default(),
        )
        .unwrap();
        let mounts = planned.mounts;
        assert_eq!(mounts[0].destination(), Path::new("/data"));
        assert_eq!(mounts[1].destination(), Path::new("/data/logs"));
        // The container binds the private place the subPath is bound at, not the volume's path.
        let place = dir.path().join("volume-subpaths/data/c/1");
        assert_eq!(mounts[1].source().as_deref(), Some(place.as_path()));
        assert_eq!(planned.subpaths.len(), 1);
        assert_eq!(planned.subpaths[0].target, place);
        assert_eq!(planned.subpaths[0].sub_path, "logs");
        assert_eq!(planned.subpaths[0].volume_path, prepared[0].path);
        assert!(mounts[1]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));

        let evil = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some("evil/passwd".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let planned = mounts_for(
            &evil,
            "spec.containers[0]",
            &source,
            false,
            &EnvList::default(),
        )
        .unwrap();
        // Refused when it is bound (before anything is mounted): the link leads out.
        let err = crate::subpath::prepare(&planned.subpaths[0]).unwrap_err();
        assert!(err.is_config_error(), "{err}");
        assert!(
            err.to_string()
                .contains("spec.containers[0].volumeMounts[0].subPath"),
            "{err}"
        );
        assert!(!place.with_file_name("0").exists());

        let climbing = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some("../../etc".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(mounts_for(
            &climbing,
            "spec.containers[0]",
            &source,
            false,
            &EnvList::default()
        )
        .is_err());

        let bad = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = mounts_for(
            &bad,
            "spec.containers[0]",
            &source,
            false,
            &EnvList::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.containers[0].volumeMounts[0].name"),
            "{err}"
        );
    }

    #[test]
    fn secrets_live_on_tmpfs() {
        if !skiff_testkit::gate::require_root("tmpfs mounts need root") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = PodInputs::default();
        let s = Secret {
            data: Some(BTreeMap::from([(
                "token".into(),
                ByteString(b"abc".to_vec()),
            )])),
            ..Default::default()
        };
        inputs.secrets.insert("creds".into(), s);
        let mut v = vol("s");
        v.secret = Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            ..Default::default()
        });
        let prepared = prepare_in(dir.path(), &pod(vec![v]), &inputs).unwrap();
        assert_eq!(
            std::fs::read_to_string(prepared[0].path.join("token")).unwrap(),
            "abc"
        );
        let stat = nix::sys::statfs::statfs(&prepared[0].path).unwrap();
        assert_eq!(stat.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
        teardown(&dir.path().join("volumes")).unwrap();
        assert!(crate::fsutil::mounts_under(dir.path()).is_empty());
    }
}

//! The identity a container process runs as: securityContext over the image's `User`, names
//! resolved in the container's own `/etc/passwd` and `/etc/group` (as containerd does).

use std::path::Path;

use crate::error::{Result, RuntimeError};
use crate::fsutil::read_in_root;

/// uid, gid and supplementary groups of a container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (primary group first).
    pub additional_gids: Vec<u32>,
    /// The user name when known (for group membership).
    pub username: Option<String>,
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// What the pod and image ask for.
#[derive(Debug, Clone, Default)]
pub struct UserRequest<'a> {
    /// The image config's `User` (`uid`, `uid:gid`, `name`, `name:group`, ...).
    pub image_user: Option<&'a str>,
    /// `securityContext.runAsUser` (container over pod).
    pub run_as_user: Option<i64>,
    /// `securityContext.runAsGroup` (container over pod).
    pub run_as_group: Option<i64>,
    /// `securityContext.supplementalGroups` and `fsGroup` of the pod.
    pub extra_groups: Vec<i64>,
}

fn id(value: i64, field: &str) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| RuntimeError::invalid(field, format!("{value} is not a valid id")))
}

/// Resolves the identity against the container root file system `rootfs`.
/// `container` names the container in errors.
pub fn resolve(rootfs: &Path, container: &str, req: &UserRequest<'_>) -> Result<Identity> {
    let passwd = parse_passwd(&read_in_root(rootfs, "/etc/passwd")?.unwrap_or_default());
    let groups = parse_group(&read_in_root(rootfs, "/etc/group")?.unwrap_or_default());
    let by_uid = |uid: u32| passwd.iter().find(|p| p.uid == uid);

    let (uid, mut gid, username) = if let Some(run_as) = req.run_as_user {
        let uid = id(run_as, "securityContext.runAsUser")?;
        let entry = by_uid(uid);
        (
            uid,
            entry.map(|e| e.gid).unwrap_or(0),
            entry.map(|e| e.name.clone()),
        )
    } else {
        let spec = req.image_user.unwrap_or("").trim();
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, gid, name) =
            if user.is_empty() {
                let entry = by_uid(0);
                (
                    0,
                    entry.map(|e| e.gid).unwrap_or(0),
                    entry.map(|e| e.name.clone()),
                )
            } else if let Ok(uid) = user.parse::<u32>() {
                let entry = by_uid(uid);
                (
                    uid,
                    entry.map(|e| e.gid).unwrap_or(0),
                    entry.map(|e| e.name.clone()),
                )
            } else {
                let entry = passwd.iter().find(|p| p.name == user).ok_or_else(|| {
                    RuntimeError::Security {
                        container: container.to_owned(),
                        message: format!(
                            "image user {user:?} not found in the image's /etc/passwd"
                        ),
                    }
                })?;
                (entry.uid, entry.gid, Some(entry.name.clone()))
            };
        let gid = match group {
            None | Some("") => gid,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| RuntimeError::Security {
                            container: container.to_owned(),
                            message: format!(
                                "image group {g:?} not found in the image's /etc/group"
                            ),
                        })?
                        .gid
                }
            },
        };
        (uid, gid, name)
    };
    if let Some(g) = req.run_as_group {
        gid = id(g, "securityContext.runAsGroup")?;
    }

    let mut additional = vec![gid];
    if let Some(name) = &username {
        for g in &groups {
            if g.members.iter().any(|m| m == name) && !additional.contains(&g.gid) {
                additional.push(g.gid);
            }
        }
    }
    for g in &req.extra_groups {
        let g = id(*g, "securityContext.supplementalGroups")?;
        if !additional.contains(&g) {
            additional.push(g);
        }
    }
    Ok(Identity {
        uid,
        gid,
        additional_gids: additional,
        username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nadm:x:4:www,other\nnogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn image_user_forms_resolve_like_containerd() {
        let dir = rootfs();
        let r = |user: &str| {
            resolve(
                dir.path(),
                "c",
                &UserRequest {
                    image_user: Some(user),
                    ..Default::default()
                },
            )
        };
        assert_eq!(r("").unwrap().uid, 0);
        let www = r("www").unwrap();
        assert_eq!((www.uid, www.gid), (33, 33));
        assert_eq!(www.additional_gids, vec![33, 4], "member of adm");
        let numeric = r("33").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (33, 33), "gid from passwd");
        assert_eq!(r("1234").unwrap().gid, 0, "unknown uid gets gid 0");
        assert_eq!(r("www:nogroup").unwrap().gid, 65534);
        assert_eq!(r("33:7").unwrap().gid, 7);
        let err = r("ghost").unwrap_err().to_string();
        assert!(err.contains("ghost"), "{err}");
        assert!(r("www:ghosts").is_err());
    }

    #[test]
    fn security_context_overrides_image_user() {
        let dir = rootfs();
        let id = resolve(
            dir.path(),
            "c",
            &UserRequest {
                image_user: Some("www"),
                run_as_user: Some(65534),
                run_as_group: Some(1000),
                extra_groups: vec![2000, 1000],
            },
        )
        .unwrap();
        assert_eq!(id.uid, 65534);
        assert_eq!(id.gid, 1000);
        assert_eq!(id.additional_gids, vec![1000, 2000]);
        assert!(resolve(
            dir.path(),
            "c",
            &UserRequest {
                run_as_user: Some(-1),
                ..Default::default()
            }
        )
        .is_err());
    }
}

//! Seccomp profiles compiled to BPF once per distinct profile, then loaded as raw programs.
//!
//! libcontainer compiles the profile with libseccomp inside every container's init process;
//! for the default profile (~400 syscalls with argument rules) that costs ~20 ms per start, more
//! than the rest of the container set-up. The runtime compiles each distinct profile once
//! (cached by content), hands the BPF program to the launcher, and the init process installs it
//! with `seccomp(SECCOMP_SET_MODE_FILTER)` just before `execve` — with `no_new_privs` already
//! set, as libcontainer would. Rules are translated exactly as libcontainer translates them.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// A compiled BPF program (an array of `struct sock_filter`).
pub(crate) type Program = Arc<Vec<u8>>;

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno).map_err(|_| format!("trace errno {errno} out of range"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => return Err("SCMP_ACT_NOTIFY is not supported".into()),
    })
}

fn operator(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // libcontainer's convention: the mask is `valueTwo`, the datum `value`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compiles `profile` to a BPF program.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, String> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("seccomp filter: {e}"))?;
    for arch in profile.architectures().iter().flatten() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let a =
            ScmpArch::from_str(&name).map_err(|e| format!("seccomp architecture {name}: {e}"))?;
        ctx.add_arch(a)
            .map_err(|e| format!("seccomp architecture {name}: {e}"))?;
    }
    // The launcher's init sets no_new_privs itself (the spec asks for it).
    ctx.set_ctl_nnp(false)
        .map_err(|e| format!("seccomp: {e}"))?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // Calls this libseccomp does not know are skipped (as libcontainer does).
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            match rule.args() {
                Some(args) if !args.is_empty() => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                operator(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let distinct = args
                        .iter()
                        .map(|a| a.index())
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                        == args.len();
                    if distinct {
                        ctx.add_rule_conditional(act, sc, &cmps)
                            .map_err(|e| format!("seccomp rule for {name}: {e}"))?;
                    } else {
                        // Several comparisons of one argument: one rule each (runc's behaviour).
                        for c in &cmps {
                            ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                                .map_err(|e| format!("seccomp rule for {name}: {e}"))?;
                        }
                    }
                }
                _ => {
                    ctx.add_rule(act, sc)
                        .map_err(|e| format!("seccomp rule for {name}: {e}"))?;
                }
            }
        }
    }
    // Export through a memfd (libseccomp 2.5 has no in-memory export).
    let name = std::ffi::CString::new("seccomp-bpf").map_err(|e| e.to_string())?;
    // SAFETY: memfd_create with a valid name; the descriptor is owned below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    ctx.export_bpf(&file)
        .map_err(|e| format!("seccomp export: {e}"))?;
    let mut bpf = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    file.read_to_end(&mut bpf).map_err(|e| e.to_string())?;
    if bpf.is_empty() || bpf.len() % 8 != 0 {
        return Err(format!("seccomp export produced {} bytes", bpf.len()));
    }
    Ok(bpf)
}

/// Installs a compiled program on the calling thread (no_new_privs must be set, or the caller
/// must hold CAP_SYS_ADMIN).
pub(crate) fn install(bpf: &[u8]) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let prog = SockFprog {
        len: (bpf.len() / 8) as u16,
        filter: bpf.as_ptr(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER, 0, prog) with a program that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const SockFprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Compiled programs by profile content.
#[derive(Default)]
pub(crate) struct Cache {
    programs: Mutex<HashMap<Vec<u8>, Program>>,
}

impl Cache {
    /// The compiled program of `profile`, compiling it on first use.
    pub(crate) fn get(&self, profile: &LinuxSeccomp) -> Result<Program, String> {
        let key = serde_json::to_vec(profile).map_err(|e| e.to_string())?;
        if let Some(p) = self
            .programs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(p));
        }
        let program = Arc::new(compile(profile)?);
        self.programs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::clone(&program));
        Ok(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capabilities;

    #[test]
    fn the_default_profile_compiles_and_is_cached() {
        let profile = crate::spec::seccomp::default_profile(&Capabilities::new());
        let cache = Cache::default();
        let a = cache.get(&profile).unwrap();
        let b = cache.get(&profile).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            a.len() > 8 * 100,
            "a real program: {} instructions",
            a.len() / 8
        );
    }

    #[test]
    fn an_installed_program_denies_what_the_profile_denies() {
        let profile = crate::spec::seccomp::default_profile(&Capabilities::new());
        let bpf = compile(&profile).unwrap();
        // Install in a child process: unshare(2) must fail with EPERM, getpid must work.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: prctl in the child.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = match install(&bpf) {
                    Err(_) => 10,
                    Ok(()) => {
                        // SAFETY: plain syscalls.
                        let un = unsafe { libc::unshare(libc::CLONE_NEWUTS) };
                        let err = std::io::Error::last_os_error().raw_os_error();
                        let pid = unsafe { libc::getpid() };
                        if un == -1 && err == Some(libc::EPERM) && pid > 0 {
                            0
                        } else {
                            11
                        }
                    }
                };
                // SAFETY: leave the forked test process at once.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}

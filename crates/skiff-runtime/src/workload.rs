//! The last step of a container's init (or an exec'd process): install the seccomp program and
//! `execve` the process with the spec's environment.
//!
//! libcontainer's default executor sets the environment with `std::env::set_var`, which takes
//! the standard library's process-wide environment lock. The init is a fork of the multi-
//! threaded runtime (through the launcher): if any runtime thread held that lock at the fork
//! (a `Command::spawn` of `nft`, any `std::env::var`), the copy in the child stays held for
//! ever and the container never starts. So the environment is never written here: it is
//! passed to `execve` directly, and the executable is looked up in the *container's* `PATH`,
//! as runc does.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;

/// Installs a precompiled seccomp program just before the process executes (see
/// `seccomp_filter`). For exec'd processes it is also what applies the container's filter at
/// all: libcontainer 0.7 drops the `linux.seccomp` section when it builds a tenant's spec.
#[derive(Clone)]
pub(crate) struct SeccompExecutor {
    pub program: Option<crate::seccomp_filter::Program>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let process = spec.process().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let args = process.args().as_deref().unwrap_or_default();
        let env = environment(process.env().as_deref().unwrap_or_default());
        let program = args.first().ok_or(ExecutorError::InvalidArg)?;
        let path = executable_path(program, path_variable(&env)).ok_or_else(|| {
            ExecutorError::Execution(
                format!("executable file `{program}` not found in $PATH").into(),
            )
        })?;
        let c_path = c_string(path.as_os_str().as_encoded_bytes())?;
        let c_args = args
            .iter()
            .map(|a| c_string(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let c_env = env
            .iter()
            .map(|e| c_string(e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(program) = &self.program {
            // Installing a filter needs no_new_privs (or CAP_SYS_ADMIN, which the process may
            // not hold any more). Containers get the fast path only when their spec sets it;
            // for exec'd processes it is set here, as runc does without CAP_SYS_ADMIN.
            let _ = prctl_no_new_privs();
            crate::seccomp_filter::install(program)
                .map_err(|e| ExecutorError::Other(format!("seccomp: {e}")))?;
        }
        let err = nix::unistd::execve(&c_path, &c_args, &c_env).unwrap_err();
        Err(ExecutorError::Execution(
            format!("exec {:?}: {err}", path.display().to_string()).into(),
        ))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::DefaultExecutor {}.validate(spec)
    }

    /// Leaves the process environment alone: [`Self::exec`] passes the spec's to `execve`.
    fn setup_envs(&self, _: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        Ok(())
    }
}

fn c_string(bytes: &[u8]) -> Result<CString, ExecutorError> {
    CString::new(bytes).map_err(|_| ExecutorError::InvalidArg)
}

/// The spec's `KEY=value` entries, a repeated key keeping its last value at its first place.
pub(crate) fn environment(entries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(entries.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        match index.get(key) {
            Some(&i) => out[i] = entry.clone(),
            None => {
                index.insert(key, out.len());
                out.push(entry.clone());
            }
        }
    }
    out
}

/// The `PATH` of an environment (empty when unset).
fn path_variable(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or_default()
}

/// Where `name` is: itself when it holds a `/`, else the first executable file of that name in
/// `path` (runc's lookup in the container's `PATH`).
pub(crate) fn executable_path(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn prctl_no_new_privs() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_variable_keeps_its_last_value_in_its_first_place() {
        let env = environment(&[
            "PATH=/bin".into(),
            "A=1".into(),
            "PATH=/usr/bin".into(),
            "B".into(),
        ]);
        assert_eq!(env, ["PATH=/usr/bin", "A=1", "B"]);
        assert_eq!(path_variable(&env), "/usr/bin");
    }

    #[test]
    fn programs_are_looked_up_in_the_given_path() {
        assert_eq!(
            executable_path("sh", "/nonexistent:/bin"),
            Some("/bin/sh".into())
        );
        assert_eq!(executable_path("./x", ""), Some("./x".into()));
        assert_eq!(executable_path("sh", ""), None);
        // A directory is not a program.
        assert_eq!(executable_path("bin", "/"), None);
    }
}

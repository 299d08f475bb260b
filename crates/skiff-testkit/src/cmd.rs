//! Running host commands (`ip`, `nft`, ...) from tests.

use std::process::Command;

/// Runs `cmd[0]` with the other elements as arguments; `Err` names the command and carries its
/// stderr.
pub fn run(cmd: &[&str]) -> Result<String, String> {
    let Some((program, args)) = cmd.split_first() else {
        return Err("empty command".into());
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`run`], panicking with the output when the command fails.
pub fn run_ok(cmd: &[&str]) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures() {
        assert_eq!(run(&["echo", "hi"]).unwrap(), "hi\n");
        let err = run(&["sh", "-c", "echo bad >&2; exit 3"]).unwrap_err();
        assert!(err.contains("sh -c") && err.contains("bad"), "{err}");
        assert!(run(&[]).is_err());
        assert!(run(&["/nonexistent/tool"]).is_err());
    }
}

//! Running real kubectl binaries against a server.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// The kubectl versions on this machine that the acceptance tests drive: `(label, path)`.
pub const KUBECTLS: &[(&str, &str)] = &[
    ("1.27", "/usr/lib/google-cloud-sdk/bin/kubectl.1.27"),
    ("1.28", "/usr/lib/google-cloud-sdk/bin/kubectl.1.28"),
    ("1.32", "/usr/bin/kubectl"),
    ("1.33", "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"),
];

/// The path of kubectl `version` (see [`KUBECTLS`]), if installed.
pub fn find(version: &str) -> Option<PathBuf> {
    KUBECTLS
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, p)| PathBuf::from(p))
        .filter(|p| p.exists())
}

/// A kubectl bound to one server, with its own HOME (and so its own discovery cache).
#[derive(Debug)]
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct Run {
    /// Exit success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Kubectl {
    /// kubectl at `bin` using `kubeconfig`.
    pub fn new(bin: &Path, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: crate::temp_dir("kubectl-home"),
        }
    }

    /// The command, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        // The timeout is kubectl's own flag: it goes before a `--` that starts a command
        // (`kubectl exec POD -- cmd`).
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        command
            .args(&args[..split])
            .arg("--request-timeout=30s")
            .args(&args[split..])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl and returns what it printed.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run kubectl"))
    }

    /// Runs kubectl with `stdin`.
    pub fn run_with_input(&self, args: &[&str], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("write kubectl stdin");
        }
        Run::from(child.wait_with_output().expect("wait for kubectl"))
    }

    /// Runs kubectl and panics with its output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(
            run.ok,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Like [`Kubectl::ok`] with `stdin`.
    pub fn ok_with_input(&self, args: &[&str], stdin: &str) -> String {
        let run = self.run_with_input(args, stdin);
        assert!(
            run.ok,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        run.stdout
    }
}

/// A running `kubectl port-forward` and the local ports it listens on (killed on drop).
#[derive(Debug)]
pub struct Forward {
    child: Child,
    /// What kubectl printed on stderr so far.
    pub stderr: Arc<Mutex<String>>,
    /// The local port of each remote port, in order.
    pub local: Vec<u16>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kubectl {
    /// Starts `kubectl port-forward TARGET :P…` and waits for its local ports.
    pub fn port_forward(&self, target: &str, remote: &[u16]) -> Forward {
        let specs: Vec<String> = remote.iter().map(|p| format!(":{p}")).collect();
        let mut args = vec!["port-forward", target];
        args.extend(specs.iter().map(String::as_str));
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // "Forwarding from 127.0.0.1:LOCAL -> REMOTE", one line per port (and one for [::1]).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut local = vec![0u16; remote.len()];
        while local.contains(&0) {
            let Some(Ok(line)) = lines.next() else {
                panic!("kubectl port-forward ended: {}", stderr.lock().unwrap());
            };
            let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") else {
                continue;
            };
            let (l, r) = rest.split_once(" -> ").unwrap();
            let i = remote.iter().position(|p| p.to_string() == r).unwrap();
            local[i] = l.parse().unwrap();
        }
        std::thread::spawn(move || for _ in lines {});
        Forward {
            child,
            stderr,
            local,
        }
    }
}

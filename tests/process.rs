//! The real `skiff` binary as a child process.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::workspace_root;

/// Path of the `skiff` binary of this build (`SKIFF_BIN` overrides). The first call builds it
/// with `cargo build -p skiff` (a no-op when the test run already built the workspace), so
/// tests never run a stale binary.
pub fn skiff_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("SKIFF_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in target/<profile>/deps")
            .to_path_buf();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace_root())
            .args(["build", "-p", "skiff", "--quiet"]);
        if profile == "release" {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p skiff");
        assert!(status.success(), "cargo build -p skiff failed");
        profile_dir.join("skiff")
    })
    .clone()
}

/// A running `skiff server --disable-agent`.
#[derive(Debug)]
pub struct SkiffProcess {
    child: Option<Child>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The HTTPS port.
    pub port: u16,
    /// Where the server's log goes.
    pub log_path: PathBuf,
    /// How long the last start took until the API accepted connections.
    pub startup: Duration,
}

impl SkiffProcess {
    /// Starts the server on `data_dir` and a free port; waits until it accepts connections.
    pub fn start(data_dir: &Path) -> SkiffProcess {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = crate::free_port();
            match Self::start_on(data_dir, port) {
                Ok(p) => return p,
                Err(e) => last_error = e,
            }
        }
        panic!("skiff server did not start: {last_error}");
    }

    /// Starts the server on `data_dir` and a free port with `extra` flags (e.g. controller
    /// timings); waits until it accepts connections.
    pub fn start_with_args(data_dir: &Path, extra: &[&str]) -> SkiffProcess {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = crate::free_port();
            match Self::start_on_with(data_dir, port, extra) {
                Ok(p) => return p,
                Err(e) => last_error = e,
            }
        }
        panic!("skiff server did not start: {last_error}");
    }

    /// Starts the server on `data_dir` and `port`.
    pub fn start_on(data_dir: &Path, port: u16) -> Result<SkiffProcess, String> {
        Self::start_on_with(data_dir, port, &[])
    }

    /// Starts the server on `data_dir` and `port` with `extra` flags.
    pub fn start_on_with(
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> Result<SkiffProcess, String> {
        let log_path = data_dir.with_extension(format!("log.{port}"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let bin = skiff_bin();
        let started = Instant::now();
        let child = Command::new(&bin)
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--https-listen-port")
            .arg(port.to_string())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", bin.display()))?;
        let mut process = SkiffProcess {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            port,
            log_path,
            startup: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = process.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    process.child = None;
                    return Err(format!("server exited with {status}: {}", process.log()));
                }
            }
            // Ready once the kubeconfig names this port (a restart rewrites the old one) and
            // the port accepts connections.
            let kubeconfig = std::fs::read_to_string(process.kubeconfig()).unwrap_or_default();
            if kubeconfig.contains(&format!(":{port}\""))
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                process.startup = started.elapsed();
                return Ok(process);
            }
            if Instant::now() > deadline {
                return Err(format!("server not ready after 30 s: {}", process.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `DIR/server/admin.kubeconfig`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("server").join("admin.kubeconfig")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to 10 s (SIGKILL after that).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for SkiffProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

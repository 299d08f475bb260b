//! Shared set-up of the runtime's integration tests: a runtime per test with its own state
//! directory and cgroup parent, the busybox image, pod builders, waiting helpers, and a
//! cleanup guard that leaves nothing behind even when the test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use skiff_runtime::{
    BackoffConfig, ContainerImage, LogOptions, LoopbackOnly, PodInputs, Runtime, RuntimeConfig,
};

pub(crate) struct TestRuntime {
    pub rt: Runtime,
    pub root: PathBuf,
    pub cgroup_parent: PathBuf,
    pub image: ContainerImage,
    _dir: tempfile::TempDir,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Directories, image and cgroup parent of a test, before (or without) a runtime.
pub(crate) struct Prepared {
    pub root: PathBuf,
    pub cgroup_parent: PathBuf,
    pub image: ContainerImage,
    pub dir: tempfile::TempDir,
}

impl Prepared {
    /// Set-up for one test, or None (after a loud skip) when not root.
    pub(crate) fn new(what: &str) -> Option<Prepared> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        if !skiff_testkit::gate::require_root(what) {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("runtime");
        let image = skiff_runtime::testing::import_image(
            &dir.path().join("images"),
            &skiff_testkit::image::busybox("latest"),
        );
        let cgroup_parent = PathBuf::from(format!("/{}", unique("skiff-test")));
        Some(Prepared {
            root,
            cgroup_parent,
            image,
            dir,
        })
    }

    pub(crate) fn config(&self) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(&self.root);
        config.cgroup_parent = self.cgroup_parent.clone();
        config.backoff = BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(4),
        };
        config.default_grace = Duration::from_secs(5);
        config
    }

    pub(crate) fn open(self, tweak: impl FnOnce(&mut RuntimeConfig)) -> TestRuntime {
        let mut config = self.config();
        tweak(&mut config);
        let rt = Runtime::open(config, Arc::new(LoopbackOnly)).expect("open runtime");
        TestRuntime {
            rt,
            root: self.root,
            cgroup_parent: self.cgroup_parent,
            image: self.image,
            _dir: self.dir,
        }
    }
}

impl TestRuntime {
    /// A runtime for one test, or None (after a loud skip) when not root.
    pub(crate) fn new(what: &str) -> Option<TestRuntime> {
        Self::with(what, |_| {})
    }

    pub(crate) fn with(what: &str, tweak: impl FnOnce(&mut RuntimeConfig)) -> Option<TestRuntime> {
        Some(Prepared::new(what)?.open(tweak))
    }

    pub(crate) fn inputs(&self, pod: &Pod) -> PodInputs {
        let mut inputs = PodInputs::default();
        let spec = pod.spec.as_ref().expect("spec");
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            inputs.images.insert(c.name.clone(), self.image.clone());
        }
        inputs
    }

    pub(crate) async fn run(&self, pod: &Pod) -> String {
        self.rt
            .run_pod(pod.clone(), self.inputs(pod))
            .await
            .expect("run_pod");
        pod.metadata.uid.clone().expect("uid")
    }

    pub(crate) async fn logs(&self, uid: &str, container: &str) -> String {
        self.logs_with(uid, container, LogOptions::default()).await
    }

    pub(crate) async fn logs_with(&self, uid: &str, container: &str, opts: LogOptions) -> String {
        let stream = self.rt.logs(uid, container, opts).await.expect("logs");
        String::from_utf8_lossy(&stream.collect(false).await).into_owned()
    }

    /// Waits (up to `secs`) until `pred` holds for the pod's status.
    pub(crate) async fn wait(
        &self,
        uid: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let mut events = self.rt.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.rt.pod_status(uid) {
                if pred(&s) {
                    return s;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "timed out waiting for {what}; status: {:#?}",
                    self.rt.pod_status(uid)
                );
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), events.recv()).await;
        }
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        self.rt.shutdown();
        skiff_runtime::testing::force_cleanup(&self.root, &self.cgroup_parent);
    }
}

pub(crate) fn container(name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    }
}

pub(crate) fn pod(name: &str, restart: &str, containers: Vec<Container>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some(unique("uid"));
    pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), name.to_string())]));
    pod.spec = Some(PodSpec {
        containers,
        restart_policy: Some(restart.into()),
        termination_grace_period_seconds: Some(5),
        ..Default::default()
    });
    pod
}

pub(crate) fn state_of<'a>(
    s: &'a PodStatus,
    name: &str,
) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no status for container {name}: {s:#?}"))
}

pub(crate) fn terminated(s: &PodStatus, name: &str) -> Option<(i32, String)> {
    state_of(s, name)
        .state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .map(|t| (t.exit_code, t.reason.clone().unwrap_or_default()))
}

pub(crate) fn running(s: &PodStatus, name: &str) -> bool {
    state_of(s, name)
        .state
        .as_ref()
        .and_then(|st| st.running.as_ref())
        .is_some()
}

pub(crate) fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or("")
}

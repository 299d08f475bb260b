//! A real control plane for the controller tests: redb store, the API server (used
//! in-process through its tower service, exactly as `skiff server` wires the controllers),
//! the scheduler and every controller. Nodes are Node objects created through the API; the
//! testkit's fake kubelet plays the nodes: it marks bound pods Running and Ready (or
//! Succeeded), and confirms graceful deletions as a kubelet would.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use skiff_apiserver::{ApiConfig, ApiServer, Identity};
use skiff_controllers::{Clients, ControllerConfig, Running};
use skiff_store::{Store, StoreOptions};
pub(crate) use skiff_testkit::kubelet::Act;
use skiff_testkit::kubelet::{spawn_kubelet, Silenced};
pub(crate) use skiff_testkit::wait::wait_for;

/// A running control plane.
pub(crate) struct Cluster {
    /// Admin client.
    pub client: Client,
    running: Option<Running>,
    kubelets: Vec<tokio::task::JoinHandle<()>>,
    store: Store,
    _dir: tempfile::TempDir,
}

/// Controller settings with short timings for tests.
pub(crate) fn fast_config() -> ControllerConfig {
    let mut config = ControllerConfig::default();
    config.scheduler.queue.initial_backoff = Duration::from_millis(100);
    config.scheduler.queue.max_backoff = Duration::from_millis(500);
    config.node_monitor_period = Duration::from_millis(200);
    config.pod_gc_period = Duration::from_millis(500);
    config.pod_gc_quarantine = Duration::from_secs(1);
    config
}

impl Cluster {
    /// Starts store, API and controllers.
    pub(crate) async fn start(config: ControllerConfig) -> Cluster {
        let _ = tracing_subscriber_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Store::open(&dir.path().join("state.redb"), StoreOptions::default()).expect("store");
        let api = ApiServer::new(store.clone(), ApiConfig::default());
        api.bootstrap().await.expect("bootstrap");
        let client = Client::new(api.service(Identity::admin()), "default");
        let clients = Clients {
            scheduler: Client::new(
                api.service(Identity::new("system:kube-scheduler", ["system:masters"])),
                "default",
            ),
            controller_manager: Client::new(
                api.service(Identity::new(
                    "system:kube-controller-manager",
                    ["system:masters"],
                )),
                "default",
            ),
        };
        let running = skiff_controllers::start(clients, config).expect("controllers");
        Cluster {
            client,
            running: Some(running),
            kubelets: Vec::new(),
            store,
            _dir: dir,
        }
    }

    /// Stops everything.
    pub(crate) async fn stop(mut self) {
        for k in self.kubelets.drain(..) {
            k.abort();
        }
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.store.clone().close().await;
    }

    /// The controllers (e.g. for scheduler stats).
    pub(crate) fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Starts a fake kubelet for `nodes` (all nodes if empty) doing `act` with each new pod.
    pub(crate) fn kubelet(&mut self, nodes: &[&str], act: Act) -> KubeletHandle {
        let silenced = Silenced::default();
        let task = spawn_kubelet(
            self.client.clone(),
            nodes.iter().map(|s| s.to_string()).collect(),
            act,
            silenced.clone(),
        );
        self.kubelets.push(task);
        KubeletHandle(silenced)
    }
}

fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init()
}

/// Lets a test stop a fake kubelet from serving some nodes (a node going silent).
#[derive(Clone)]
pub(crate) struct KubeletHandle(Silenced);

impl KubeletHandle {
    /// Stops acting for `node`.
    pub(crate) fn pause(&self, node: &str) {
        self.0.silence(node);
    }
}

/// A Node to create.
pub(crate) struct NodeSpec {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub ephemeral: String,
    pub pods: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
    pub ready: String,
    pub unschedulable: bool,
}

/// A node with 4 CPUs, 8 GiB, 110 pods, Ready.
pub(crate) fn node(name: &str) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        cpu: "4".into(),
        memory: "8Gi".into(),
        ephemeral: "20Gi".into(),
        pods: "110".into(),
        labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
        taints: Vec::new(),
        ready: "True".into(),
        unschedulable: false,
    }
}

impl NodeSpec {
    pub(crate) fn cpu(mut self, v: &str) -> Self {
        self.cpu = v.into();
        self
    }
    pub(crate) fn memory(mut self, v: &str) -> Self {
        self.memory = v.into();
        self
    }
    pub(crate) fn ephemeral(mut self, v: &str) -> Self {
        self.ephemeral = v.into();
        self
    }
    pub(crate) fn pods(mut self, v: &str) -> Self {
        self.pods = v.into();
        self
    }
    pub(crate) fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    pub(crate) fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }
    pub(crate) fn ready(mut self, v: &str) -> Self {
        self.ready = v.into();
        self
    }
    pub(crate) fn cordoned(mut self) -> Self {
        self.unschedulable = true;
        self
    }

    /// The Node object.
    pub(crate) fn object(&self) -> Value {
        let now = jiff::Timestamp::now();
        let now = jiff::Timestamp::from_second(now.as_second())
            .unwrap()
            .to_string();
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {"taints": self.taints, "unschedulable": self.unschedulable},
            "status": {
                "capacity": {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral, "pods": self.pods},
                "allocatable": {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeral, "pods": self.pods},
                "conditions": [{"type": "Ready", "status": self.ready, "reason": "KubeletReady",
                    "lastHeartbeatTime": now, "lastTransitionTime": now}],
            }
        })
    }

    /// Creates it (and its status, which create may reset).
    pub(crate) async fn create(&self, client: &Client) -> Node {
        let api: Api<Node> = Api::all(client.clone());
        let object: Node = serde_json::from_value(self.object()).expect("node json");
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .expect("create node");
        let status = json!({"status": self.object()["status"].clone()});
        let _ = created;
        api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status")
    }
}

/// A pod with one container requesting `cpu` and `memory` (empty: none).
pub(crate) fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    let mut requests = serde_json::Map::new();
    if !cpu.is_empty() {
        requests.insert("cpu".into(), json!(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".into(), json!(memory));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}]}
    })
}

/// Merges `extra` into the pod's spec.
pub(crate) fn with_spec(mut pod: Value, extra: Value) -> Value {
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

/// Creates a pod in `default`.
pub(crate) async fn create_pod(client: &Client, pod: Value) -> Pod {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let pod: Pod = serde_json::from_value(pod).expect("pod json");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// The node a pod is bound to, once it is.
pub(crate) async fn wait_bound(client: &Client, name: &str) -> String {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    wait_for(
        Duration::from_secs(10),
        &format!("pod {name} to be bound"),
        || {
            let api = api.clone();
            async move {
                api.get(name)
                    .await
                    .ok()
                    .and_then(|p| p.spec.and_then(|s| s.node_name))
                    .filter(|n| !n.is_empty())
            }
        },
    )
    .await
}

/// The PodScheduled=False message of a pod, once the scheduler set it.
pub(crate) async fn wait_unschedulable(client: &Client, name: &str) -> String {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    wait_for(
        Duration::from_secs(10),
        &format!("pod {name} to be unschedulable"),
        || {
            let api = api.clone();
            async move {
                let p = api.get(name).await.ok()?;
                let c = p
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
                (c.reason.as_deref() == Some("Unschedulable"))
                    .then(|| c.message.unwrap_or_default())
            }
        },
    )
    .await
}

/// Whether the pod is still unbound (after giving the scheduler `settle` to act).
pub(crate) async fn stays_unbound(client: &Client, name: &str, settle: Duration) -> bool {
    tokio::time::sleep(settle).await;
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    api.get(name)
        .await
        .ok()
        .and_then(|p| p.spec.and_then(|s| s.node_name))
        .is_none_or(|n| n.is_empty())
}

/// Events about the object named `name` in `default`.
pub(crate) async fn events_for(client: &Client, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::default_namespaced(client.clone());
    api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

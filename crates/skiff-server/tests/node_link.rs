//! The node link against a real API server and store: joining with the token alone (and each
//! way a join is refused), registration (Ready, labels, taints), the Lease, pods flowing to the
//! node and statuses back, resume after a server restart, logs, and node authorization over
//! HTTPS with a node certificate (403 for other nodes and their pods).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus, Pod, PodStatus, Secret, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_apiserver::{ApiConfig, ApiServer, GroupAuthorizer, NodeAuthorizer, UnionAuthorizer};
use skiff_link::proto::{PodChange, PodRef, PodStatusUpdate};
use skiff_link::quic::{AgentLink, AgentLinkConfig, AgentLinkEvent, LinkError, NoLogs};
use skiff_link::session::DesiredPods;
use skiff_pki::{ServerPki, ServingNames};
use skiff_server::nodes::tokens::TokenAdmin;
use skiff_server::nodes::{JoinRateLimit, NodeLink, NodeLinkSettings, INVALID_TOKEN_MESSAGE};
use skiff_store::{Store, StoreOptions};
use tokio::sync::{mpsc, watch};

struct Harness {
    dir: PathBuf,
    api: ApiServer,
    pki: ServerPki,
    link: Option<NodeLink>,
    link_port: u16,
    api_url: String,
    stop_api: watch::Sender<bool>,
    join_rate_limit: JoinRateLimit,
    images: Option<Arc<dyn skiff_link::quic::ImageSource>>,
}

impl Harness {
    async fn start(dir: &Path) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server_dir = dir.join("server");
        let pki = ServerPki::load_or_create(
            &server_dir.join("tls"),
            &ServingNames::new("localhost", ["127.0.0.1".parse().unwrap()]),
        )
        .unwrap();
        std::fs::create_dir_all(server_dir.join("db")).unwrap();
        let store =
            Store::open(&server_dir.join("db/state.redb"), StoreOptions::default()).unwrap();
        let authorizer = UnionAuthorizer::new(vec![
            Arc::new(GroupAuthorizer::masters()),
            Arc::new(NodeAuthorizer::new(store.clone())),
        ]);
        let api = ApiServer::new(
            store,
            ApiConfig {
                authorizer: Arc::new(authorizer),
                node_certificates: Some(skiff_pki::NodeCertificates::default()),
                ..ApiConfig::default()
            },
        );
        api.bootstrap().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_url = format!("https://{}", listener.local_addr().unwrap());
        let tls =
            skiff_pki::server_config(pki.ca.cert_pem(), &pki.serving, &[b"http/1.1"]).unwrap();
        let (stop_api, mut stopped) = watch::channel(false);
        let serving = api.clone();
        tokio::spawn(async move {
            let _ = serving
                .serve(listener, Arc::new(tls), async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
        pki.write_admin_kubeconfig(&server_dir.join("admin.kubeconfig"), &api_url)
            .unwrap();
        let mut harness = Harness {
            dir: dir.to_path_buf(),
            api,
            pki,
            link: None,
            link_port: 0,
            api_url,
            stop_api,
            join_rate_limit: JoinRateLimit::default(),
            images: None,
        };
        harness.start_link().await;
        harness
    }

    async fn start_link(&mut self) {
        let mut settings = NodeLinkSettings::new(
            SocketAddr::from(([127, 0, 0, 1], self.link_port)),
            &self.dir.join("server"),
            None,
        );
        settings.heartbeat_interval = Duration::from_millis(500);
        settings.join_rate_limit = self.join_rate_limit;
        settings.images = self.images.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let link = loop {
            match NodeLink::start(&self.api, &self.pki, settings.clone()).await {
                Ok(link) => break link,
                Err(skiff_server::nodes::NodeLinkError::Link(LinkError::Bind { .. }))
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(other) => panic!("{other}"),
            }
        };
        self.link_port = link.local_addr().unwrap().port();
        self.link = Some(link);
    }

    fn link_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.link_port)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("server/node-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn admin(&self) -> kube::Client {
        kube::Client::new(self.api.service(skiff_pki::Identity::admin()), "default")
    }

    /// A client over HTTPS authenticated with the certificate an agent stored in `agent_dir`.
    async fn https_client_for(&self, agent_dir: &Path) -> kube::Client {
        let pair = skiff_pki::CertKeyPair {
            cert_pem: std::fs::read_to_string(agent_dir.join("tls/node.crt")).unwrap(),
            key_pem: std::fs::read_to_string(agent_dir.join("tls/node.key")).unwrap(),
        };
        let yaml = skiff_pki::kubeconfig_yaml(&skiff_pki::KubeconfigParams {
            cluster_name: "skiff",
            user_name: "node",
            server_url: &self.api_url,
            ca_pem: self.pki.ca.cert_pem(),
            client: &pair,
        });
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop_api.send(true);
    }
}

fn registration(name: &str) -> Node {
    let quantity = |s: &str| Quantity(s.to_string());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), quantity("2")),
        ("memory".to_string(), quantity("4Gi")),
        ("pods".to_string(), quantity("110")),
    ]
    .into();
    Node {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some([("zone".to_string(), "lab".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                value: Some("edge".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            ..Default::default()
        }),
    }
}

async fn agent(
    harness: &Harness,
    dir: &Path,
    name: &str,
    token: Option<String>,
) -> Result<(AgentLink, mpsc::Receiver<AgentLinkEvent>), LinkError> {
    let mut config = AgentLinkConfig::new(
        &harness.link_url(),
        token,
        dir.to_path_buf(),
        registration(name),
    );
    config.backoff =
        skiff_link::quic::Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    AgentLink::start(config, None, Arc::new(NoLogs("test node".into()))).await
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

async fn create_pod(client: &kube::Client, name: &str, node: &str, secret: Option<&str>) -> Pod {
    let mut container = json!({"name": "c", "image": "busybox"});
    if let Some(secret) = secret {
        container["env"] =
            json!([{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]);
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [container]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_joins_with_the_token_and_is_ready_with_labels_taints_and_lease() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let agent_dir = dir.path().join("agent");
    let (link, _events) = agent(&harness, &agent_dir, "edge-1", Some(harness.token()))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(harness.admin());
    let node = eventually("node edge-1 Ready", || async {
        nodes.get_opt("edge-1").await.unwrap().filter(ready)
    })
    .await;
    assert_eq!(node.metadata.labels.as_ref().unwrap()["zone"], "lab");
    let taints = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
    assert_eq!(taints[0].key, "dedicated");
    assert_eq!(
        node.status.as_ref().unwrap().capacity.as_ref().unwrap()["pods"].0,
        "110"
    );
    // The lease is renewed with every heartbeat.
    let leases: Api<Lease> = Api::namespaced(harness.admin(), "kube-node-lease");
    let first = eventually("lease", || async {
        leases.get_opt("edge-1").await.unwrap()
    })
    .await;
    let first_renew = first.spec.unwrap().renew_time.unwrap().0;
    eventually("lease renewal", || async {
        let lease = leases.get("edge-1").await.unwrap();
        (lease.spec.unwrap().renew_time.unwrap().0 > first_renew).then_some(())
    })
    .await;
    // Token Secrets are visible as upstream bootstrap tokens.
    let secrets: Api<Secret> = Api::namespaced(harness.admin(), "kube-system");
    let id = harness
        .token()
        .split("::")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let secret = secrets.get(&format!("bootstrap-token-{id}")).await.unwrap();
    assert_eq!(
        secret.type_.as_deref(),
        Some("bootstrap.kubernetes.io/token")
    );
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_flow_to_the_node_statuses_flow_back_and_deletion_is_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let agent_dir = dir.path().join("agent");
    let (link, mut events) = agent(&harness, &agent_dir, "edge-2", Some(harness.token()))
        .await
        .unwrap();
    let admin = harness.admin();
    let pod = create_pod(&admin, "web", "edge-2", None).await;
    let uid = pod.metadata.uid.clone().unwrap();
    // The pod arrives (in the snapshot or as a change).
    let received = loop {
        match tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            AgentLinkEvent::Pods(DesiredPods::Snapshot { pods, .. }) if !pods.is_empty() => {
                break pods[0].clone()
            }
            AgentLinkEvent::Pods(DesiredPods::Changes { changes, .. }) => {
                if let Some(PodChange::Upsert { pod }) = changes.into_iter().next() {
                    break *pod;
                }
            }
            _ => {}
        }
    };
    assert_eq!(received.metadata.uid.as_deref(), Some(uid.as_str()));
    let reference = PodRef {
        namespace: "default".into(),
        name: "web".into(),
        uid: uid.clone(),
    };
    link.report_statuses(vec![PodStatusUpdate {
        pod: reference.clone(),
        status: PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.42.0.5".into()),
            ..Default::default()
        },
    }]);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    eventually("pod Running", || async {
        let pod = pods.get("web").await.unwrap();
        (pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).then_some(())
    })
    .await;
    // Deleting a bound pod waits for the node's confirmation.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    loop {
        if let AgentLinkEvent::Pods(DesiredPods::Changes { changes, .. }) =
            tokio::time::timeout(Duration::from_secs(15), events.recv())
                .await
                .unwrap()
                .unwrap()
        {
            let marked = changes.iter().any(|c| {
                matches!(c, PodChange::Upsert { pod } if pod.metadata.deletion_timestamp.is_some())
                    || matches!(c, PodChange::Removed { .. })
            });
            if marked {
                break;
            }
        }
    }
    link.report_terminated(vec![reference]);
    eventually("pod gone", || async {
        pods.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_link_resumes_with_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::start(dir.path()).await;
    let agent_dir = dir.path().join("agent");
    let admin = harness.admin();
    create_pod(&admin, "before", "edge-3", None).await;
    let (link, mut events) = agent(&harness, &agent_dir, "edge-3", Some(harness.token()))
        .await
        .unwrap();
    loop {
        if let AgentLinkEvent::Pods(DesiredPods::Snapshot { pods, .. }) =
            tokio::time::timeout(Duration::from_secs(15), events.recv())
                .await
                .unwrap()
                .unwrap()
        {
            assert_eq!(pods.len(), 1);
            break;
        }
    }
    // Server restart of the link; a pod is bound while the node is away.
    let old = harness.link.take().unwrap();
    old.shutdown().await;
    drop(old);
    create_pod(&admin, "during", "edge-3", None).await;
    let started = std::time::Instant::now();
    harness.start_link().await;
    let changes = loop {
        match tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            AgentLinkEvent::Pods(DesiredPods::Changes { changes, .. }) => break changes,
            AgentLinkEvent::Pods(DesiredPods::Snapshot { .. }) => {
                panic!("a resumed session must not resend everything")
            }
            _ => {}
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "rejoin took {:?}",
        started.elapsed()
    );
    let names: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            PodChange::Upsert { pod } => pod.metadata.name.clone(),
            PodChange::Removed { pod } => Some(pod.name.clone()),
        })
        .collect();
    assert_eq!(names, vec!["during".to_string()]);
    // /metrics: the reconnect counts as a resumed session, and only the new session is
    // connected (nextest runs each test in its own process, so the figures are this test's).
    let sessions = &skiff_metrics::global().link;
    assert_eq!(sessions.established(true), 1);
    eventually("one connected session", || async {
        (sessions.connected() == 1).then_some(())
    })
    .await;
    link.shutdown().await;
    eventually("no connected session", || async {
        (sessions.connected() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_refusals_show_their_messages_and_issue_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let tokens = TokenAdmin::from_kubeconfig(&dir.path().join("server/admin.kubeconfig"))
        .await
        .unwrap();
    // Wrong secret.
    let good = skiff_pki::JoinToken::parse(&harness.token()).unwrap();
    let mut wrong = good.clone();
    wrong.secret = "wrongwrongwrong0".into();
    let a = dir.path().join("a");
    let err = agent(&harness, &a, "n-a", Some(wrong.to_string()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVALID_TOKEN_MESSAGE), "{err}");
    assert!(!a.join("tls/node.crt").exists());
    // Revoked.
    let extra = tokens.create(None, "lab").await.unwrap();
    assert!(tokens
        .list()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == extra.id && t.description == "lab"));
    tokens.revoke(&extra.id).await.unwrap();
    let err = agent(&harness, &a, "n-a", Some(extra.to_string()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVALID_TOKEN_MESSAGE), "{err}");
    // An unknown id gets the very same answer (nothing tells which ids exist).
    let mut unknown = extra.clone();
    unknown.id = "zzzzzz".into();
    let err = agent(&harness, &a, "n-a", Some(unknown.to_string()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVALID_TOKEN_MESSAGE), "{err}");
    assert!(!err.to_string().contains("zzzzzz"), "{err}");
    // Expired.
    let short = tokens
        .create(Some(Duration::from_secs(1)), "short")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let err = agent(&harness, &a, "n-a", Some(short.to_string()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVALID_TOKEN_MESSAGE), "{err}");
    assert!(tokens
        .list()
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == short.id && t.expired));
    assert!(!a.join("tls/node.crt").exists());
    // Name takeover.
    let (owner, _events) = agent(
        &harness,
        &dir.path().join("owner"),
        "taken",
        Some(harness.token()),
    )
    .await
    .unwrap();
    let thief = dir.path().join("thief");
    let err = agent(&harness, &thief, "taken", Some(harness.token()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already taken"), "{err}");
    assert!(!thief.join("tls/node.crt").exists());
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_modify_another_node_or_its_pods() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let dir1 = dir.path().join("n1");
    let dir2 = dir.path().join("n2");
    let (l1, _e1) = agent(&harness, &dir1, "n1", Some(harness.token()))
        .await
        .unwrap();
    let (l2, _e2) = agent(&harness, &dir2, "n2", Some(harness.token()))
        .await
        .unwrap();
    let admin = harness.admin();
    let nodes_admin: Api<Node> = Api::all(admin.clone());
    for name in ["n1", "n2"] {
        eventually("nodes registered", || async {
            nodes_admin.get_opt(name).await.unwrap().filter(ready)
        })
        .await;
    }
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "n2-secret", "namespace": "default"}, "data": {"k": "dg=="}}),
    )
    .unwrap();
    Api::<Secret>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create_pod(&admin, "on-n1", "n1", None).await;
    create_pod(&admin, "on-n2", "n2", Some("n2-secret")).await;

    let n1 = harness.https_client_for(&dir1).await;
    let nodes: Api<Node> = Api::all(n1.clone());
    let pods: Api<Pod> = Api::namespaced(n1.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(n1.clone(), "default");
    let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{what}: {}", status.message);
            assert!(
                status.message.contains("system:node:n1"),
                "{what}: {}",
                status.message
            );
        }
        other => panic!("{what} should be forbidden, got {other:?}"),
    };
    let label = Patch::Merge(json!({"metadata": {"labels": {"hacked": "yes"}}}));
    forbidden(
        nodes
            .patch("n2", &PatchParams::default(), &label)
            .await
            .map(|_| ()),
        "patch node n2",
    );
    forbidden(
        nodes
            .patch_status(
                "n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": []}})),
            )
            .await
            .map(|_| ()),
        "patch node n2 status",
    );
    forbidden(
        nodes
            .delete("n2", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete node n2",
    );
    forbidden(
        pods.patch_status(
            "on-n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .map(|_| ()),
        "patch status of a pod on n2",
    );
    forbidden(
        pods.delete("on-n2", &DeleteParams::default())
            .await
            .map(|_| ()),
        "delete a pod on n2",
    );
    forbidden(
        secrets.get("n2-secret").await.map(|_| ()),
        "read n2's secret",
    );
    forbidden(
        Api::<Lease>::namespaced(n1.clone(), "kube-node-lease")
            .patch(
                "n2",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"holderIdentity": "n1"}})),
            )
            .await
            .map(|_| ()),
        "take n2's lease",
    );
    // Its own objects are fine.
    nodes
        .patch("n1", &PatchParams::default(), &label)
        .await
        .unwrap();
    pods.patch_status(
        "on-n1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    // Nothing of n2 changed.
    let n2 = nodes_admin.get("n2").await.unwrap();
    assert!(!n2.metadata.labels.unwrap().contains_key("hacked"));
    let pod = Api::<Pod>::namespaced(admin, "default")
        .get("on-n2")
        .await
        .unwrap();
    assert_ne!(pod.status.and_then(|s| s.phase).as_deref(), Some("Failed"));
    l1.shutdown().await;
    l2.shutdown().await;
}

/// NodeRestriction: with its own certificate a node may not lift its taints, give itself
/// restricted labels (`node-role.kubernetes.io/*`), claim a pod CIDR or uncordon itself; and a
/// registration can neither carry restricted labels nor choose the pod CIDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_may_not_change_its_taints_cidr_or_restricted_labels() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let dir1 = dir.path().join("n1");
    let mut proposal = registration("n1");
    let spec = proposal.spec.as_mut().unwrap();
    spec.pod_cidr = Some("10.42.99.0/24".into());
    spec.pod_cidrs = Some(vec!["10.42.99.0/24".into()]);
    spec.unschedulable = Some(false);
    let mut config = AgentLinkConfig::new(
        &harness.link_url(),
        Some(harness.token()),
        dir1.clone(),
        proposal,
    );
    config.backoff =
        skiff_link::quic::Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let (l1, _e1) = AgentLink::start(config, None, Arc::new(NoLogs("n1".into())))
        .await
        .unwrap();
    let nodes_admin: Api<Node> = Api::all(harness.admin());
    let registered = eventually("node n1 registered", || async {
        nodes_admin.get_opt("n1").await.unwrap().filter(ready)
    })
    .await;
    let spec = registered.spec.clone().unwrap();
    assert_eq!(
        spec.pod_cidr, None,
        "the pod CIDR is the server's to assign"
    );
    assert_eq!(spec.pod_cidrs, None);
    assert_eq!(spec.taints.unwrap()[0].key, "dedicated");

    let n1: Api<Node> = Api::all(harness.https_client_for(&dir1).await);
    let refused = |result: Result<Node, kube::Error>, expected: &str| match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{}", status.message);
            assert!(status.message.contains(expected), "{}", status.message);
        }
        other => panic!("expected 403 ({expected}), got {other:?}"),
    };
    let patch = |value: serde_json::Value| {
        let n1 = n1.clone();
        async move {
            n1.patch("n1", &PatchParams::default(), &Patch::Merge(value))
                .await
        }
    };
    refused(
        patch(json!({"spec": {"taints": null}})).await,
        "node \"n1\" is not allowed to modify taints",
    );
    refused(
        patch(json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}})).await,
        "is not allowed to modify labels: node-role.kubernetes.io/control-plane",
    );
    refused(
        patch(json!({"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "gpu"}}}))
            .await,
        "is not allowed to modify labels: node-restriction.kubernetes.io/pool",
    );
    refused(
        patch(json!({"spec": {"podCIDR": "10.42.7.0/24", "podCIDRs": ["10.42.7.0/24"]}})).await,
        "is not allowed to modify podCIDR",
    );
    refused(
        patch(json!({"spec": {"unschedulable": true}})).await,
        "is not allowed to modify unschedulable",
    );
    // Through the status subresource labels are checked too.
    refused(
        n1.patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"node-role.kubernetes.io/master": ""}}})),
        )
        .await,
        "is not allowed to modify labels: node-role.kubernetes.io/master",
    );
    // Kubelet labels and labels of other domains are fine.
    patch(json!({"metadata": {"labels": {"node.kubernetes.io/instance-type": "pi4", "example.com/rack": "r1"}}}))
        .await
        .unwrap();
    let stored = nodes_admin.get("n1").await.unwrap();
    let labels = stored.metadata.labels.unwrap();
    assert!(!labels.keys().any(|k| k.starts_with("node-role.")));
    assert_eq!(stored.spec.unwrap().taints.unwrap().len(), 1);
    l1.shutdown().await;

    // A registration proposing a restricted label is refused with upstream's message, and no
    // Node is created.
    let mut proposal = registration("n2");
    proposal.metadata.labels.as_mut().unwrap().insert(
        "node-role.kubernetes.io/control-plane".into(),
        "true".into(),
    );
    let mut config = AgentLinkConfig::new(
        &harness.link_url(),
        Some(harness.token()),
        dir.path().join("n2"),
        proposal,
    );
    config.backoff =
        skiff_link::quic::Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let (l2, mut events) = AgentLink::start(config, None, Arc::new(NoLogs("n2".into())))
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Some(AgentLinkEvent::Disconnected { reason }) => break reason,
                Some(_) => continue,
                None => panic!("the link ended"),
            }
        }
    })
    .await
    .expect("the registration should be refused");
    assert!(
        reason.contains(
            "node \"n2\" is not allowed to set the following labels: node-role.kubernetes.io/control-plane"
        ),
        "{reason}"
    );
    assert!(nodes_admin.get_opt("n2").await.unwrap().is_none());
    l2.shutdown().await;
}

/// Guessing tokens is rate-limited per source address: after the burst of refused joins every
/// join from that address is refused with "too many join attempts", even with a valid token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_attempts_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::start(dir.path()).await;
    // A slow refill, so the test cannot race it.
    harness.join_rate_limit = JoinRateLimit {
        per_minute: 1.0,
        burst: 3,
    };
    harness.link.take().unwrap().shutdown().await;
    harness.start_link().await;
    let mut wrong = skiff_pki::JoinToken::parse(&harness.token()).unwrap();
    wrong.secret = "wrongwrongwrong0".into();
    let a = dir.path().join("a");
    for attempt in 0..3 {
        let err = agent(&harness, &a, "n-a", Some(wrong.to_string()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(INVALID_TOKEN_MESSAGE),
            "attempt {attempt}: {err}"
        );
    }
    let err = agent(&harness, &a, "n-a", Some(wrong.to_string()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too many join attempts"), "{err}");
    let err = agent(&harness, &a, "n-a", Some(harness.token()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too many join attempts"), "{err}");
    assert!(!a.join("tls/node.crt").exists());
}

async fn disconnected(events: &mut mpsc::Receiver<AgentLinkEvent>) -> String {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Some(AgentLinkEvent::Disconnected { reason }) => break reason,
                Some(_) => continue,
                None => panic!("the link ended"),
            }
        }
    })
    .await
    .expect("the session should end")
}

async fn unauthorized(client: &kube::Client, what: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(what, || async {
        match nodes.list(&Default::default()).await {
            Err(kube::Error::Api(status)) if status.code == 401 => Some(()),
            _ => None,
        }
    })
    .await;
}

/// Node certificates are short-lived and stop working at once, on the API (401) and on the
/// link, when the Node is deleted or the join token the node joined with is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_node_or_revoking_its_token_revokes_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir.path()).await;
    let tokens = TokenAdmin::from_kubeconfig(&dir.path().join("server/admin.kubeconfig"))
        .await
        .unwrap();
    let t1 = tokens.create(None, "n1").await.unwrap();
    let t2 = tokens.create(None, "n2").await.unwrap();
    let (dir1, dir2) = (dir.path().join("n1"), dir.path().join("n2"));
    let (l1, mut e1) = agent(&harness, &dir1, "n1", Some(t1.to_string()))
        .await
        .unwrap();
    let (l2, mut e2) = agent(&harness, &dir2, "n2", Some(t2.to_string()))
        .await
        .unwrap();
    let nodes_admin: Api<Node> = Api::all(harness.admin());
    for name in ["n1", "n2"] {
        eventually("nodes registered", || async {
            nodes_admin.get_opt(name).await.unwrap().filter(ready)
        })
        .await;
    }
    // Short-lived: a week, not a year.
    let info = skiff_pki::CertKeyPair {
        cert_pem: std::fs::read_to_string(dir1.join("tls/node.crt")).unwrap(),
        key_pem: String::new(),
    }
    .info()
    .unwrap();
    let left = info.not_after - jiff::Timestamp::now().as_second();
    assert!(
        (6 * 86400..=7 * 86400 + 60).contains(&left),
        "{left} s left"
    );
    let c1 = harness.https_client_for(&dir1).await;
    let c2 = harness.https_client_for(&dir2).await;
    Api::<Node>::all(c1.clone()).get("n1").await.unwrap();
    Api::<Node>::all(c2.clone()).get("n2").await.unwrap();

    // Deleting the Node revokes n1's certificate: 401 on the API, and the link session ends.
    nodes_admin
        .delete("n1", &DeleteParams::default())
        .await
        .unwrap();
    unauthorized(&c1, "n1's certificate refused by the API").await;
    let reason = disconnected(&mut e1).await;
    assert!(reason.contains("revoked"), "{reason}");
    // Reconnecting with the certificate fails too (the TLS handshake refuses it).
    assert!(!l1.wait_connected(Duration::from_secs(2)).await);
    assert!(
        nodes_admin.get_opt("n1").await.unwrap().is_none(),
        "not re-registered"
    );
    // n2 is untouched.
    Api::<Node>::all(c2.clone()).get("n2").await.unwrap();

    // Revoking the token n2 joined with revokes n2's certificate.
    tokens.revoke(&t2.id).await.unwrap();
    unauthorized(&c2, "n2's certificate refused by the API").await;
    let reason = disconnected(&mut e2).await;
    assert!(reason.contains("revoked"), "{reason}");
    assert!(!l2.wait_connected(Duration::from_secs(2)).await);
    l1.shutdown().await;
    l2.shutdown().await;
}

/// The records survive a restart of the link: a certificate issued before still works, and a
/// revoked one stays revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::start(dir.path()).await;
    let dir1 = dir.path().join("n1");
    let (l1, _e1) = agent(&harness, &dir1, "n1", Some(harness.token()))
        .await
        .unwrap();
    let nodes_admin: Api<Node> = Api::all(harness.admin());
    eventually("n1 registered", || async {
        nodes_admin.get_opt("n1").await.unwrap().filter(ready)
    })
    .await;
    l1.shutdown().await;
    harness.link.take().unwrap().shutdown().await;
    harness.api.node_certificates().unwrap().revoke_node("n1");
    harness.start_link().await;
    let c1 = harness.https_client_for(&dir1).await;
    Api::<Node>::all(c1).get("n1").await.unwrap();
    let (l1, _e1) = agent(&harness, &dir1, "n1", None).await.unwrap();
    assert!(l1.wait_connected(Duration::from_secs(10)).await);
    l1.shutdown().await;
}

/// Holds every manifest request until released: image hand-overs that stay in flight.
#[derive(Debug)]
struct StuckImages(Arc<tokio::sync::Notify>);

impl skiff_link::quic::ImageSource for StuckImages {
    fn manifest<'a>(
        &'a self,
        _reference: &'a str,
    ) -> skiff_link::quic::ImageFuture<
        'a,
        Result<Option<skiff_link::proto::image::OfferedManifest>, String>,
    > {
        Box::pin(async move {
            self.0.notified().await;
            Ok(None)
        })
    }

    fn open_blob<'a>(
        &'a self,
        _digest: &'a str,
    ) -> skiff_link::quic::ImageFuture<'a, Result<(u64, skiff_link::quic::LogReader), String>> {
        Box::pin(async move { Err("no blobs".to_string()) })
    }
}

/// A node cannot make the server read unbounded objects or serve unbounded image hand-overs:
/// beyond the limits its requests are answered at once with the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_queue_unbounded_object_reads_or_image_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = Harness::start(dir.path()).await;
    let release = Arc::new(tokio::sync::Notify::new());
    harness.link.take().unwrap().shutdown().await;
    harness.images = Some(Arc::new(StuckImages(release.clone())));
    harness.start_link().await;
    let (link, _events) = agent(
        &harness,
        &dir.path().join("n1"),
        "n1",
        Some(harness.token()),
    )
    .await
    .unwrap();
    assert!(link.wait_connected(Duration::from_secs(10)).await);
    let refs: Vec<skiff_link::proto::ObjectRef> = (0..300)
        .map(|i| skiff_link::proto::ObjectRef {
            kind: skiff_link::proto::ObjectKind::Secret,
            namespace: "default".into(),
            name: format!("s{i}"),
        })
        .collect();
    let results = link
        .get_objects(refs, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(results.len(), 300);
    assert!(results.iter().all(|r| r
        .error
        .as_deref()
        .is_some_and(|e| e.contains("getObjects names 300 objects; at most 256 per request"))));
    // Two hand-overs stay in flight; the third is refused at once.
    let stuck: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|image| {
            let link = &link;
            async move { link.fetch_image(image, Duration::from_secs(20)).await }
        })
        .collect();
    let mut stuck = Box::pin(futures::future::join_all(stuck));
    let third = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        link.fetch_image("c", Duration::from_secs(5)).await
    };
    let refused = tokio::select! {
        refused = third => refused.unwrap(),
        _ = &mut stuck => panic!("the stuck fetches should not finish"),
    };
    let error = refused.offer().error.clone().unwrap_or_default();
    assert!(
        error.contains("too many concurrent image fetches from this node (at most 2)"),
        "{error}"
    );
    release.notify_waiters();
    drop(stuck);
    link.shutdown().await;
}

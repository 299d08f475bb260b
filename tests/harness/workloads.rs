//! Manifests that several fault and cluster tests run.

/// Two busybox httpd pods answering with their name on port 8080 that tolerate an unreachable
/// or not-ready node for an hour: a partition or a clock jump must not evict them, so whatever
/// restarts them is the fault's doing.
pub const PATIENT_WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: patient}
spec:
  replicas: 2
  selector: {matchLabels: {app: patient}}
  template:
    metadata: {labels: {app: patient}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 3600}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 3600}
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

/// The label selector of [`PATIENT_WEB`]'s pods.
pub const PATIENT_SELECTOR: &str = "app=patient";

/// What a fault must leave alone of [`PATIENT_WEB`]'s pods on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPods {
    /// (pod, container id, restart count, start time) per container.
    pub states: Vec<(String, String, i64, String)>,
    /// (pod, IP) per pod.
    pub ips: Vec<(String, String)>,
    /// The containers' processes on the node.
    pub pids: Vec<i32>,
}

/// Applies [`PATIENT_WEB`], waits for both pods to run on `node`, and records them.
pub fn start_patient_pods(cluster: &super::Cluster, node: &str) -> PatientPods {
    cluster.apply(PATIENT_WEB);
    cluster.wait_for("2 Running pods", std::time::Duration::from_secs(90), || {
        let pods = cluster.pods(PATIENT_SELECTOR);
        pods.len() == 2 && pods.iter().all(super::pod_running)
    });
    let pods = PatientPods {
        states: cluster.container_states(PATIENT_SELECTOR),
        ips: cluster.pod_ips(PATIENT_SELECTOR),
        pids: cluster.node(node).container_pids(),
    };
    assert!(pods.pids.len() >= 2, "container processes: {:?}", pods.pids);
    pods
}

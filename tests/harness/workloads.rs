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

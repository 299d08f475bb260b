use super::*;
use crate::registry::find;

fn defaulted(group: &str, plural: &str, mut object: Value) -> Value {
    apply_defaults(find(group, "v1", plural).expect("resource"), &mut object);
    object
}

#[test]
fn pod_spec_matches_what_upstream_stores_for_kubectl_run() {
    // `kubectl run web --image=nginx`, as `kubectl get pod web -o yaml` shows the spec upstream
    // (minus the projected service account token volume, which skiff does not mint).
    let pod = defaulted(
        "",
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"run": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        }),
    );
    assert_eq!(
        pod["spec"],
        json!({
            "containers": [{
                "image": "nginx", "imagePullPolicy": "Always", "name": "web", "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ]
        })
    );
}

#[test]
fn defaulting_is_idempotent() {
    let pod = defaulted(
        "",
        "pods",
        json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}]}}),
    );
    let again = defaulted("", "pods", pod.clone());
    assert_eq!(pod, again);
    let d = defaulted(
        "apps",
        "deployments",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
    );
    assert_eq!(defaulted("apps", "deployments", d.clone()), d);
}

#[test]
fn image_pull_policy_follows_the_tag() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("registry.local:5000/nginx", "Always"),
        ("registry.local:5000/nginx:1.0", "IfNotPresent"),
        (
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "IfNotPresent",
        ),
        (
            "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Always",
        ),
    ];
    for (image, want) in cases {
        let pod = defaulted(
            "",
            "pods",
            json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"], want,
            "{image}"
        );
    }
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {"containers": [{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}]}}),
    );
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"], "Never",
        "explicit values win"
    );
}

#[test]
fn pods_request_what_they_limit_and_quantities_are_canonical() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi", "ephemeral-storage": 1000000000},
                      "requests": {"cpu": "100u"}}}]}}),
    );
    let r = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(
        r["limits"],
        json!({"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1G"})
    );
    assert_eq!(
        r["requests"],
        json!({"cpu": "1m", "memory": "1Gi", "ephemeral-storage": "1G"})
    );
}

#[test]
fn templates_do_not_get_pod_only_defaults() {
    let d = defaulted(
        "apps",
        "deployments",
        json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
            "resources": {"limits": {"cpu": "1"}}}]}}}}),
    );
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert!(spec.get("enableServiceLinks").is_none());
    assert!(spec.get("tolerations").is_none());
    assert!(spec.get("priority").is_none());
    assert!(spec.get("serviceAccountName").is_none());
    assert!(spec["containers"][0]["resources"].get("requests").is_none());
}

#[test]
fn deployment_defaults() {
    let d = defaulted(
        "apps",
        "deployments",
        json!({"spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    let recreate = defaulted(
        "apps",
        "deployments",
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    let zero = defaulted("apps", "deployments", json!({"spec": {"replicas": 0}}));
    assert_eq!(zero["spec"]["replicas"], 0, "explicit zero is kept");
}

#[test]
fn replicaset_and_daemonset_defaults() {
    let rs = defaulted("apps", "replicasets", json!({"spec": {}}));
    assert_eq!(rs["spec"]["replicas"], 1);
    let ds = defaulted(
        "apps",
        "daemonsets",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"],
        "File"
    );
}

#[test]
fn job_defaults() {
    let job = defaulted(
        "batch",
        "jobs",
        json!({"metadata": {"name": "pi"}, "spec": {"template": {
        "metadata": {"labels": {"app": "pi"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
    );
    let spec = &job["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["manualSelector"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        job["metadata"]["labels"],
        json!({"app": "pi"}),
        "job labels default to the template's"
    );
    let parallel = defaulted(
        "batch",
        "jobs",
        json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1}}),
    );
    assert!(parallel["spec"].get("completions").is_none());
    assert_eq!(parallel["spec"]["backoffLimit"], i64::from(i32::MAX));
}

#[test]
fn service_defaults() {
    let svc = defaulted(
        "",
        "services",
        json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "UDP"}]}}),
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
    assert!(svc["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(
        svc["spec"]["ports"][1],
        json!({"port": 443, "protocol": "UDP", "targetPort": "https"})
    );
    let lb = defaulted(
        "",
        "services",
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(
        lb["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
}

#[test]
fn namespace_and_secret_defaults() {
    let ns = defaulted("", "namespaces", json!({"metadata": {"name": "demo"}}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "demo"})
    );
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    let secret = defaulted(
        "",
        "secrets",
        json!({"data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}}),
    );
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["data"],
        json!({"a": "eQ==", "b": "aGVsbG8="}),
        "stringData wins and is base64-encoded"
    );
    assert!(
        secret.get("stringData").is_none(),
        "stringData is write-only"
    );
}

#[test]
fn node_allocatable_defaults_to_capacity() {
    let node = defaulted(
        "",
        "nodes",
        json!({"status": {"capacity": {"cpu": "2", "memory": "24576Mi", "pods": "110"}}}),
    );
    assert_eq!(
        node["status"]["allocatable"],
        json!({"cpu": "2", "memory": "24Gi", "pods": "110"})
    );
}

#[test]
fn nested_defaults_for_probes_volumes_and_env() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {
        "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}, {"name": "host", "hostPath": {"path": "/x"}},
                    {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
        "containers": [{"name": "c", "image": "x",
            "livenessProbe": {"httpGet": {"port": 8080}},
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}}),
    );
    let spec = &pod["spec"];
    assert_eq!(
        spec["volumes"][0],
        json!({"name": "scratch", "emptyDir": {}})
    );
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
    assert_eq!(spec["volumes"][2]["hostPath"]["type"], "");
    assert_eq!(spec["volumes"][3]["projected"]["defaultMode"], 420);
    assert_eq!(
        spec["volumes"][3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
    let c = &spec["containers"][0];
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
}

#[test]
fn host_network_pods_default_host_ports() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {"hostNetwork": true,
        "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}}),
    );
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 53);
}

#[test]
fn existing_tolerations_are_kept_and_not_duplicated() {
    let pod = defaulted(
        "",
        "pods",
        json!({"spec": {"containers": [], "tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    );
    let t = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0]["tolerationSeconds"], 60);
    assert_eq!(t[2]["key"], "node.kubernetes.io/unreachable");
    let tolerate_all = defaulted(
        "",
        "pods",
        json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}),
    );
    assert_eq!(
        tolerate_all["spec"]["tolerations"],
        json!([{"operator": "Exists"}])
    );
}

#[test]
fn mistyped_values_are_left_for_validation() {
    let pod = defaulted("", "pods", json!({"spec": "nonsense"}));
    assert_eq!(pod["spec"], "nonsense");
    let d = defaulted(
        "apps",
        "deployments",
        json!({"spec": {"strategy": 5, "replicas": "two"}}),
    );
    assert_eq!(d["spec"]["strategy"], 5);
    assert_eq!(d["spec"]["replicas"], "two");
    let mut not_object = json!([1, 2]);
    apply_defaults(find("", "v1", "pods").expect("pods"), &mut not_object);
    assert_eq!(not_object, json!([1, 2]));
}

#[test]
fn image_tags_parse_like_upstream() {
    assert_eq!(image_tag("nginx"), "latest");
    assert_eq!(image_tag("nginx:1.2"), "1.2");
    assert_eq!(image_tag("localhost:5000/a/b"), "latest");
    assert_eq!(image_tag("localhost:5000/a/b:v1"), "v1");
    assert_eq!(image_tag("a@sha256:abc"), "");
}

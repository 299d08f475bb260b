//! Real-world manifests (as k3s and common charts ship them) must be accepted: validation that
//! rejects valid objects would break users' existing YAML.

use serde_json::{json, Value};
use skiff_types::defaults::apply_defaults;
use skiff_types::registry::find_by_kind;
use skiff_types::strategy::{prepare_for_create, prepare_for_update};
use skiff_types::validation::{check_types, unknown_fields, validate_create, validate_update};

/// Creates `object` as the API server does and panics with upstream's message if refused.
fn accept(mut object: Value) -> Value {
    let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let info = find_by_kind(&api_version, &kind)
        .unwrap_or_else(|| panic!("{api_version} {kind} not served"));
    check_types(info, &object).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        unknown_fields(info, &object),
        Vec::<String>::new(),
        "{kind}"
    );
    if info.namespaced && object["metadata"].get("namespace").is_none() {
        object["metadata"]["namespace"] = json!("default");
    }
    object["metadata"]["uid"] = json!("3c1d2b9a-aaaa-4bbb-8ccc-dddddddddddd");
    prepare_for_create(info, &mut object);
    apply_defaults(info, &mut object);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    validate_create(info, &object)
        .unwrap_or_else(|e| panic!("{}", e.message(&info.qualified_kind(), &name)));
    // Re-applying the same object must also pass update validation.
    let mut again = object.clone();
    prepare_for_update(info, &object, &mut again);
    apply_defaults(info, &mut again);
    validate_update(info, &object, &again)
        .unwrap_or_else(|e| panic!("{}", e.message(&info.qualified_kind(), &name)));
    object
}

#[test]
fn coredns_as_k3s_ships_it() {
    accept(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "coredns", "namespace": "kube-system"}
    }));
    accept(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system"},
        "data": {"Corefile": ".:53 {\n    errors\n    health\n    ready\n    forward . /etc/resolv.conf\n}\n", "NodeHosts": ""}
    }));
    let deploy = accept(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
        "spec": {
            "revisionHistoryLimit": 0,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "containers": [{
                        "name": "coredns",
                        "image": "rancher/mirrored-coredns-coredns:1.12.0",
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "volumeMounts": [
                            {"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true},
                            {"name": "custom-config-volume", "mountPath": "/etc/coredns/custom", "readOnly": true}
                        ],
                        "ports": [
                            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}
                        ],
                        "securityContext": {"allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["all"]}, "readOnlyRootFilesystem": true},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                            "initialDelaySeconds": 60, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                            "initialDelaySeconds": 0, "periodSeconds": 2, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}
                    }],
                    "dnsPolicy": "Default",
                    "volumes": [
                        {"name": "config-volume", "configMap": {"name": "coredns",
                            "items": [{"key": "Corefile", "path": "Corefile"}, {"key": "NodeHosts", "path": "NodeHosts"}]}},
                        {"name": "custom-config-volume", "configMap": {"name": "coredns-custom", "optional": true}}
                    ]
                }
            }
        }
    }));
    assert_eq!(
        deploy["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"],
        420
    );
    accept(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"selector": {"k8s-app": "kube-dns"}, "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                      {"name": "metrics", "port": 9153, "protocol": "TCP"}],
            "ipFamilyPolicy": "SingleStack"}
    }));
}

#[test]
fn pod_as_upstream_admission_leaves_it() {
    // What a pod looks like after upstream's admission (service account token volume injected).
    accept(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7c5d8f9b4-x2k8p", "namespace": "default", "generateName": "web-7c5d8f9b4-",
            "labels": {"app": "web", "pod-template-hash": "7c5d8f9b4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c5d8f9b4",
                "uid": "0a1b2c3d-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "initContainers": [
                {"name": "migrate", "image": "app:1.0", "command": ["/migrate"]},
                {"name": "proxy", "image": "envoy:1.31", "restartPolicy": "Always",
                 "startupProbe": {"tcpSocket": {"port": 15000}, "failureThreshold": 30, "periodSeconds": 1}}
            ],
            "containers": [{
                "name": "web", "image": "app:1.0",
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "APP_TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": false}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}}
                ],
                "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "APP_"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "1Gi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                "volumeMounts": [{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                                 {"name": "cache", "mountPath": "/cache", "subPath": "web"}],
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
            }],
            "volumes": [
                {"name": "cache", "emptyDir": {"sizeLimit": "500Mi"}},
                {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}
            ],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}}]},
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
            "terminationGracePeriodSeconds": 45,
            "securityContext": {"fsGroup": 2000, "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["db.local"]}],
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}
        }
    }));
}

#[test]
fn node_agent_daemonset_and_job() {
    accept(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "node-exporter", "namespace": "monitoring"},
        "spec": {
            "selector": {"matchLabels": {"app": "node-exporter"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": {"app": "node-exporter"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {
                    "hostNetwork": true, "hostPID": true,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "exporter", "image": "prom/node-exporter:v1.8.2",
                        "args": ["--path.rootfs=/host"],
                        "ports": [{"containerPort": 9100, "hostPort": 9100, "name": "metrics"}],
                        "volumeMounts": [{"name": "root", "mountPath": "/host", "readOnly": true, "mountPropagation": "HostToContainer"}]}],
                    "volumes": [{"name": "root", "hostPath": {"path": "/", "type": "Directory"}}]
                }
            }
        }
    }));
    accept(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {"backoffLimit": 4, "ttlSecondsAfterFinished": 100, "completions": 3, "parallelism": 2,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "perl:5.34.0", "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"]}]}}}
    }));
    accept(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "indexed"},
        "spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 5, "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}
    }));
}

#[test]
fn nodes_leases_and_events_as_agents_write_them() {
    accept(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "edge-01", "labels": {"kubernetes.io/hostname": "edge-01", "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "arm64", "node-role.kubernetes.io/worker": ""},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"],
            "taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "memory": "8038784Ki", "pods": "110", "ephemeral-storage": "30830568Ki"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
                "lastHeartbeatTime": "2025-06-01T12:00:00Z", "lastTransitionTime": "2025-06-01T11:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.21"}, {"type": "Hostname", "address": "edge-01"}],
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "skiff://0.1.0", "kubeletVersion": "v1.33.0", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "arm64"}}
    }));
    accept(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "edge-01", "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "edge-01", "uid": "1"}]},
        "spec": {"holderIdentity": "edge-01", "leaseDurationSeconds": 40, "renewTime": "2025-06-01T12:00:00.123456Z"}
    }));
    accept(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-1.1838b1c6f0b3a2d4", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "Container image \"nginx\" already present on machine", "type": "Normal",
        "source": {"component": "kubelet", "host": "edge-01"}, "count": 1,
        "firstTimestamp": "2025-06-01T12:00:00Z", "lastTimestamp": "2025-06-01T12:00:00Z"
    }));
    accept(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "edge-01.1838b1c6f0b3a2d5", "namespace": "default"},
        "involvedObject": {"kind": "Node", "name": "edge-01"},
        "eventTime": "2025-06-01T12:00:00.000000Z", "reportingComponent": "node-controller", "reportingInstance": "skiff",
        "action": "NodeReady", "reason": "NodeReady", "type": "Normal"
    }));
}

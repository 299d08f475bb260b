use super::*;
use crate::registry::find;

fn now() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().expect("timestamp")
}

/// `now` minus `seconds`, as an RFC 3339 string.
fn ago(seconds: i64) -> String {
    Timestamp::from_second(now().as_second() - seconds)
        .expect("timestamp")
        .to_string()
}

fn cells(group: &str, plural: &str, object: Value) -> Vec<Value> {
    let info = find(group, "v1", plural).expect("resource");
    let t = table_at(info, &[object], json!({}), IncludeObject::None, now());
    t["rows"][0]["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn column_names(group: &str, plural: &str) -> Vec<&'static str> {
    columns(find(group, "v1", plural).expect("resource"))
        .iter()
        .map(|c| c.name)
        .collect()
}

fn pod(status: Value) -> Value {
    json!({"metadata": {"name": "web-1", "creationTimestamp": ago(300)},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx"}]},
        "status": status})
}

#[test]
fn human_durations_match_upstream() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (2 * 365 * 86400, "2y"),
        (2 * 365 * 86400 + 100 * 86400, "2y100d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (seconds, want) in cases {
        assert_eq!(human_duration(seconds), want, "{seconds}s");
    }
}

#[test]
fn columns_match_upstream_printers() {
    assert_eq!(
        column_names("", "pods"),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(
        column_names("", "nodes"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime"
        ]
    );
    assert_eq!(
        column_names("apps", "deployments"),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("apps", "replicasets"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("apps", "daemonsets"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("batch", "jobs"),
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    assert_eq!(column_names("", "namespaces"), ["Name", "Status", "Age"]);
    assert_eq!(
        column_names("", "services"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(
        column_names("", "events"),
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    assert_eq!(column_names("", "configmaps"), ["Name", "Data", "Age"]);
    assert_eq!(column_names("", "secrets"), ["Name", "Type", "Data", "Age"]);
    assert_eq!(
        column_names("", "serviceaccounts"),
        ["Name", "Secrets", "Age"]
    );
    assert_eq!(
        column_names("coordination.k8s.io", "leases"),
        ["Name", "Holder", "Age"]
    );
    assert_eq!(
        column_names("apps", "controllerrevisions"),
        ["Name", "Controller", "Revision", "Age"]
    );
    let pods = columns(find("", "v1", "pods").expect("pods"));
    let wide: Vec<&str> = pods
        .iter()
        .filter(|c| c.priority == 1)
        .map(|c| c.name)
        .collect();
    assert_eq!(wide, ["IP", "Node", "Nominated Node", "Readiness Gates"]);
    assert_eq!(pods[0].format, "name");
}

#[test]
fn table_envelope_and_include_object() {
    let info = find("", "v1", "pods").expect("pods");
    let p = pod(json!({"phase": "Pending"}));
    let t = table_at(
        info,
        std::slice::from_ref(&p),
        json!({"resourceVersion": "42", "continue": "abc"}),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "abc"})
    );
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name",
        "description": t["columnDefinitions"][0]["description"], "priority": 0})
    );
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": p["metadata"]})
    );
    let full = table_at(
        info,
        std::slice::from_ref(&p),
        json!({}),
        IncludeObject::Object,
        now(),
    );
    assert_eq!(full["rows"][0]["object"]["spec"], p["spec"]);
    assert_eq!(full["rows"][0]["object"]["kind"], "Pod");
    let none = table_at(info, &[p], Value::Null, IncludeObject::None, now());
    assert!(none["rows"][0].get("object").is_none());
    assert_eq!(none["metadata"], json!({}));
    assert_eq!(IncludeObject::parse("Object"), Some(IncludeObject::Object));
    assert_eq!(IncludeObject::parse("bogus"), None);
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
}

#[test]
fn pending_and_running_pods() {
    let c = cells("", "pods", pod(json!({"phase": "Pending"})));
    assert_eq!(
        c,
        vec![
            json!("web-1"),
            json!("0/1"),
            json!("Pending"),
            json!("0"),
            json!("5m"),
            json!("<none>"),
            json!("n1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    let creating = cells(
        "",
        "pods",
        pod(json!({"phase": "Pending", "containerStatuses": [
        {"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]})),
    );
    assert_eq!(creating[2], "ContainerCreating");
    let running = cells(
        "",
        "pods",
        pod(
            json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
        "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}}]}),
        ),
    );
    assert_eq!(
        &running[1..4],
        &[json!("1/1"), json!("Running"), json!("0")]
    );
    assert_eq!(running[5], "10.42.0.5");
}

#[test]
fn crash_looping_pods_show_restarts_with_age() {
    let c = cells(
        "",
        "pods",
        pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "web", "ready": false, "restartCount": 5,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(90)}}}]}),
        ),
    );
    assert_eq!(
        &c[1..4],
        &[
            json!("0/1"),
            json!("CrashLoopBackOff"),
            json!("5 (90s ago)")
        ]
    );
}

#[test]
fn finished_pods_carry_row_conditions() {
    let info = find("", "v1", "pods").expect("pods");
    let done = pod(
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    let t = table_at(info, &[done], json!({}), IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][2], "Completed");
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    let failed = pod(
        json!({"phase": "Failed", "containerStatuses": [{"name": "web", "restartCount": 0,
        "state": {"terminated": {"exitCode": 137}}}]}),
    );
    let t = table_at(info, &[failed], json!({}), IncludeObject::None, now());
    assert_eq!(t["rows"][0]["cells"][2], "ExitCode:137");
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Failed");
    let signalled = cells(
        "",
        "pods",
        pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "web",
        "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
        ),
    );
    assert_eq!(signalled[2], "Signal:9");
}

#[test]
fn init_containers_show_progress() {
    let mut p = pod(json!({"phase": "Pending",
        "initContainerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "restartCount": 0, "state": {"running": {}}}],
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
    p["spec"]["initContainers"] = json!([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]);
    assert_eq!(cells("", "pods", p.clone())[2], "Init:1/2");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"terminated": {"exitCode": 3, "reason": "Error"}});
    p["status"]["initContainerStatuses"][1]["restartCount"] = json!(2);
    let c = cells("", "pods", p.clone());
    assert_eq!(c[2], "Init:Error");
    assert_eq!(c[3], "2");
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    assert_eq!(cells("", "pods", p)[2], "Init:CrashLoopBackOff");
}

#[test]
fn sidecars_count_towards_ready_containers() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
        "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    p["spec"]["initContainers"] =
        json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
    let c = cells("", "pods", p);
    assert_eq!(&c[1..4], &[json!("2/2"), json!("Running"), json!("1")]);
}

#[test]
fn terminating_gated_and_unknown_pods() {
    let mut p = pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "state": {"running": {}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(cells("", "pods", p.clone())[2], "Terminating");
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("", "pods", p)[2], "Unknown");
    let gated = cells(
        "",
        "pods",
        pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        ),
    );
    assert_eq!(gated[2], "SchedulingGated");
    let evicted = cells(
        "",
        "pods",
        pod(json!({"phase": "Failed", "reason": "Evicted"})),
    );
    assert_eq!(evicted[2], "Evicted");
}

#[test]
fn readiness_gates_and_missing_creation_time() {
    let mut p = pod(
        json!({"phase": "Running", "conditions": [{"type": "example.com/ready", "status": "True"}]}),
    );
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/ready"}, {"conditionType": "example.com/other"}]);
    p["metadata"]
        .as_object_mut()
        .map(|m| m.remove("creationTimestamp"));
    let c = cells("", "pods", p);
    assert_eq!(c[8], "1/2");
    assert_eq!(c[4], "<unknown>");
}

#[test]
fn nodes() {
    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(86400 * 3),
            "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "skiff://0.1.0"}}});
    let c = cells("", "nodes", node);
    assert_eq!(
        c,
        vec![
            json!("n1"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,edge,master"),
            json!("3d"),
            json!("v1.33.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0"),
            json!("skiff://0.1.0")
        ]
    );
    let bare = cells(
        "",
        "nodes",
        json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    assert_eq!(&bare[1..3], &[json!("NotReady"), json!("<none>")]);
    assert_eq!(bare[9], "<unknown>");
    let new = cells("", "nodes", json!({"metadata": {"name": "n3"}}));
    assert_eq!(new[1], "Unknown");
}

#[test]
fn workloads() {
    let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(3600)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "front"},
                 "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"key": "canary", "operator": "DoesNotExist"}]},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells("apps", "deployments", d),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("60m"),
            json!("web,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web,!canary,env in (dev,prod),tier=front")
        ]
    );
    let rs = json!({"metadata": {"name": "web-abc"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": 3, "readyReplicas": 1}});
    assert_eq!(
        &cells("apps", "replicasets", rs)[..4],
        &[json!("web-abc"), json!(3), json!(3), json!(1)]
    );
    let ds = json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent:1"}]}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
    assert_eq!(
        cells("apps", "daemonsets", ds),
        vec![
            json!("agent"),
            json!(2),
            json!(2),
            json!(1),
            json!(2),
            json!(1),
            json!("kubernetes.io/os=linux"),
            json!("<unknown>"),
            json!("a"),
            json!("agent:1"),
            json!("app=agent")
        ]
    );
    let no_selector = json!({"metadata": {"name": "x"}, "spec": {"template": {"spec": {}}}});
    assert_eq!(cells("apps", "daemonsets", no_selector)[6], "<none>");
}

#[test]
fn jobs() {
    let job = |status: Value, spec: Value| {
        json!({"metadata": {"name": "pi", "creationTimestamp": ago(600)},
        "spec": spec, "status": status})
    };
    let running = cells(
        "batch",
        "jobs",
        job(
            json!({"startTime": ago(120), "active": 1}),
            json!({"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
               "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}),
        ),
    );
    assert_eq!(
        running,
        vec![
            json!("pi"),
            json!("Running"),
            json!("0/1"),
            json!("2m"),
            json!("10m"),
            json!("pi"),
            json!("perl"),
            json!("batch.kubernetes.io/controller-uid=u1")
        ]
    );
    let complete = cells(
        "batch",
        "jobs",
        job(
            json!({"startTime": ago(500), "completionTime": ago(455), "succeeded": 1,
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
            json!({"completions": 1}),
        ),
    );
    assert_eq!(
        &complete[1..4],
        &[json!("Complete"), json!("1/1"), json!("45s")]
    );
    let failed = cells(
        "batch",
        "jobs",
        job(
            json!({"conditions": [{"type": "Failed", "status": "True"}]}),
            json!({"parallelism": 3}),
        ),
    );
    assert_eq!(
        &failed[1..4],
        &[json!("Failed"), json!("0/1 of 3"), json!("")]
    );
    let suspended = cells(
        "batch",
        "jobs",
        job(
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
            json!({}),
        ),
    );
    assert_eq!(&suspended[1..3], &[json!("Suspended"), json!("0/1")]);
}

#[test]
fn services() {
    let svc = |spec: Value, status: Value| json!({"metadata": {"name": "web"}, "spec": spec, "status": status});
    let c = cells(
        "",
        "services",
        svc(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
        "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}),
            json!({}),
        ),
    );
    assert_eq!(
        c,
        vec![
            json!("web"),
            json!("ClusterIP"),
            json!("10.43.0.10"),
            json!("<none>"),
            json!("80/TCP,53/UDP"),
            json!("<unknown>"),
            json!("app=web")
        ]
    );
    let np = cells(
        "",
        "services",
        svc(
            json!({"type": "NodePort", "clusterIPs": ["10.43.0.11"],
        "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
            json!({}),
        ),
    );
    assert_eq!(
        &np[2..5],
        &[json!("10.43.0.11"), json!("<none>"), json!("80:30080/TCP")]
    );
    assert_eq!(np[6], "<none>");
    let lb = cells(
        "",
        "services",
        svc(
            json!({"type": "LoadBalancer", "ports": [], "externalIPs": ["1.2.3.4"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}]}}),
        ),
    );
    assert_eq!(
        &lb[2..5],
        &[
            json!("<none>"),
            json!("5.6.7.8,lb.example.com,1.2.3.4"),
            json!("<none>")
        ]
    );
    let pending = cells(
        "",
        "services",
        svc(json!({"type": "LoadBalancer"}), json!({})),
    );
    assert_eq!(pending[3], "<pending>");
    let ext = cells(
        "",
        "services",
        svc(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        ),
    );
    assert_eq!(ext[3], "db.example.com");
}

#[test]
fn events() {
    let e = json!({"metadata": {"name": "web-1.17f", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled", "message": "  Successfully pulled image \"nginx\"\n", "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4});
    assert_eq!(
        cells("", "events", e),
        vec![
            json!("30s"),
            json!("Normal"),
            json!("Pulled"),
            json!("pod/web-1"),
            json!("spec.containers{web}"),
            json!("kubelet, n1"),
            json!("Successfully pulled image \"nginx\""),
            json!("10m"),
            json!(4),
            json!("web-1.17f")
        ]
    );
    let new_style = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "eventTime": "2025-06-01T11:59:00.000000Z",
        "reportingComponent": "skiff-controller", "series": {"count": 7, "lastObservedTime": "2025-06-01T11:59:50.000000Z"}});
    let c = cells("", "events", new_style);
    assert_eq!(
        &c[..4],
        &[json!("10s"), json!(""), json!(""), json!("node")]
    );
    assert_eq!(c[5], "skiff-controller");
    assert_eq!(c[7], "60s");
    assert_eq!(c[8], 7);
    let singleton = cells(
        "",
        "events",
        json!({"metadata": {"name": "y"}, "firstTimestamp": ago(5)}),
    );
    assert_eq!(singleton[8], 1, "events without a count count once");
    assert_eq!(singleton[0], "5s", "last seen falls back to first seen");
}

#[test]
fn small_kinds() {
    assert_eq!(
        cells(
            "",
            "namespaces",
            json!({"metadata": {"name": "demo", "creationTimestamp": ago(45)}, "status": {"phase": "Active"}})
        ),
        vec![json!("demo"), json!("Active"), json!("45s")]
    );
    assert_eq!(
        cells(
            "",
            "configmaps",
            json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
        )[1],
        3
    );
    assert_eq!(
        cells(
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "AA=="}})
        )[1..3],
        [json!("Opaque"), json!(1)]
    );
    assert_eq!(
        cells(
            "",
            "serviceaccounts",
            json!({"metadata": {"name": "default"}})
        )[1],
        0
    );
    assert_eq!(
        cells(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}})
        )[1],
        "n1"
    );
    assert_eq!(
        cells(
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "n1"}, "spec": {}})
        )[1],
        ""
    );
    let rev = json!({"metadata": {"name": "agent-5d9f", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "1", "controller": true}]},
        "revision": 2});
    assert_eq!(
        cells("apps", "controllerrevisions", rev)[1..3],
        [json!("daemonset.apps/agent"), json!(2)]
    );
    assert_eq!(
        cells(
            "apps",
            "controllerrevisions",
            json!({"metadata": {"name": "r"}, "revision": 1})
        )[1],
        "<none>"
    );
}

#[test]
fn endpoints_and_endpoint_slices() {
    assert_eq!(column_names("", "endpoints"), ["Name", "Endpoints", "Age"]);
    let info = find("discovery.k8s.io", "v1", "endpointslices").expect("served");
    let names: Vec<_> = columns(info).iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "AddressType", "Ports", "Endpoints", "Age"]);

    let ep = |subsets: Value| json!({"metadata": {"name": "web", "creationTimestamp": ago(60)}, "subsets": subsets});
    let cases = [
        (json!(null), "<none>"),
        (
            json!([{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
                    "ports": [{"port": 80}]}]),
            "10.42.0.5:80,10.42.0.6:80",
        ),
        (
            json!([{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
                    "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}]),
            "10.42.0.5:80,10.42.0.6:80,10.42.0.5:81 + 1 more...",
        ),
        (json!([{"addresses": [{"ip": "fd00::5"}]}]), "fd00::5"),
        (
            json!([{"notReadyAddresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]),
            "",
        ),
    ];
    for (subsets, want) in cases {
        assert_eq!(
            cells("", "endpoints", ep(subsets.clone())),
            vec![json!("web"), json!(want), json!("60s")],
            "{subsets}"
        );
    }

    let slice = |ports: Value, endpoints: Value| {
        let object = json!({"metadata": {"name": "web-x7k2p", "creationTimestamp": ago(60)},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints});
        let t = table_at(info, &[object], json!({}), IncludeObject::None, now());
        t["rows"][0]["cells"].clone()
    };
    assert_eq!(
        slice(json!(null), json!(null)),
        json!(["web-x7k2p", "IPv4", "<unset>", "<unset>", "60s"])
    );
    assert_eq!(
        slice(
            json!([{"name": "http", "port": 80}, {"name": "dns"}, {}, {"port": 9}]),
            json!([{"addresses": ["10.42.0.1"]}, {"addresses": ["10.42.0.2", "10.42.0.3"]},
                   {"addresses": ["10.42.0.4"]}])
        ),
        json!([
            "web-x7k2p",
            "IPv4",
            "80,dns,* + 1 more...",
            "10.42.0.1,10.42.0.2,10.42.0.3 + 1 more...",
            "60s"
        ])
    );
}

#[test]
fn network_policies() {
    let info = find("networking.k8s.io", "v1", "networkpolicies").expect("served");
    let names: Vec<_> = columns(info).iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Pod-Selector", "Age"]);
    let row = |selector: Value| {
        let object = json!({"metadata": {"name": "deny", "creationTimestamp": ago(60)},
            "spec": {"podSelector": selector}});
        let t = table_at(info, &[object], json!({}), IncludeObject::None, now());
        t["rows"][0]["cells"].clone()
    };
    assert_eq!(row(json!({})), json!(["deny", "<none>", "60s"]));
    assert_eq!(
        row(json!({"matchLabels": {"role": "db", "app": "web"},
                   "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]})),
        json!(["deny", "app=web,role=db,tier notin (a)", "60s"])
    );
}

//! Validation as the API server drives it (prepare → default → validate), checked against the
//! messages upstream's API server returns for the same objects.

use serde_json::{json, Value};
use skiff_types::defaults::apply_defaults;
use skiff_types::registry::{find, ResourceInfo};
use skiff_types::strategy::{prepare_for_create, prepare_for_status_update, prepare_for_update};
use skiff_types::validation::{
    check_types, validate_binding, validate_create, validate_status_update, validate_update,
    FieldErrorKind,
};

fn info(group: &str, plural: &str) -> &'static ResourceInfo {
    find(group, "v1", plural).unwrap_or_else(|| panic!("{plural} not served"))
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Create as the API server does; the 422 message on failure.
fn create(group: &str, plural: &str, mut object: Value) -> Result<Value, String> {
    let info = info(group, plural);
    if info.namespaced && object["metadata"].get("namespace").is_none() {
        object["metadata"]["namespace"] = json!("default");
    }
    object["metadata"]["uid"] = json!("6f5c1a4e-0000-4000-8000-000000000001");
    prepare_for_create(info, &mut object);
    apply_defaults(info, &mut object);
    validate_create(info, &object)
        .map_err(|e| e.message(&info.qualified_kind(), &name_of(&object)))?;
    Ok(object)
}

/// Update (main resource) as the API server does; the 422 message on failure.
fn update(group: &str, plural: &str, old: &Value, mut new: Value) -> Result<Value, String> {
    let info = info(group, plural);
    prepare_for_update(info, old, &mut new);
    apply_defaults(info, &mut new);
    validate_update(info, old, &new)
        .map_err(|e| e.message(&info.qualified_kind(), &name_of(&new)))?;
    Ok(new)
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": containers}})
}

fn deployment(selector: Value, template_labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": selector,
            "template": {"metadata": {"labels": template_labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
}

const SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn valid_objects_pass() {
    create("", "pods", pod(json!([{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "128Mi"}},
        "livenessProbe": {"httpGet": {"port": "http"}}, "env": [{"name": "MY.VAR-1", "value": "x"}]}]))).expect("pod");
    create(
        "apps",
        "deployments",
        deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        ),
    )
    .expect("deployment");
    create("", "namespaces", json!({"metadata": {"name": "demo"}})).expect("namespace");
    create("", "services", json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).expect("service");
    create(
        "",
        "configmaps",
        json!({"metadata": {"name": "cfg"}, "data": {"app.properties": "a=b"}}),
    )
    .expect("configmap");
    create(
        "",
        "secrets",
        json!({"metadata": {"name": "s"}, "stringData": {"password": "x"}}),
    )
    .expect("secret");
    create(
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "default"}}),
    )
    .expect("serviceaccount");
    create("", "nodes", json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {"capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"}}})).expect("node");
    create(
        "batch",
        "jobs",
        json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "pi", "image": "perl"}]}}}}),
    )
    .expect("job");
    create("apps", "daemonsets", json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}})).expect("daemonset");
    create("apps", "replicasets", json!({"metadata": {"name": "rs"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}})).expect("replicaset");
    create("coordination.k8s.io", "leases", json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2025-01-01T00:00:00.000000Z"}})).expect("lease");
    create("", "events", json!({"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Scheduled", "message": "ok", "type": "Normal"})).expect("event");
    create(
        "apps",
        "controllerrevisions",
        json!({"metadata": {"name": "agent-1"}, "data": {"spec": {}}, "revision": 1}),
    )
    .expect("revision");
}

#[test]
fn pod_without_image() {
    assert_eq!(
        create("", "pods", pod(json!([{"name": "web"}]))),
        Err("Pod \"web\" is invalid: spec.containers[0].image: Required value".to_string())
    );
}

#[test]
fn pod_with_bad_name_and_several_errors() {
    let mut p = pod(json!([{"name": "web", "image": "nginx"}, {"name": "web", "image": "nginx"}]));
    p["metadata"]["name"] = json!("Web_1");
    p["spec"]["restartPolicy"] = json!("Sometimes");
    let err = create("", "pods", p).expect_err("invalid");
    assert_eq!(
        err,
        format!(
            "Pod \"Web_1\" is invalid: [metadata.name: Invalid value: \"Web_1\": {SUBDOMAIN_ERR}, spec.containers[1].name: Duplicate value: \"web\", spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"]"
        )
    );
}

#[test]
fn pod_container_field_errors() {
    let cases = [
        (json!({"name": "web", "image": "x", "ports": [{"containerPort": 70000}]}),
         "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        (json!({"name": "web", "image": "x", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}),
         "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
        (json!({"name": "web", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}),
         "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"),
        // Requests default to limits first, so both are reported, as upstream does.
        (json!({"name": "web", "image": "x", "resources": {"limits": {"cpu": "-1"}}}),
         "[spec.containers[0].resources.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0, spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0]"),
        (json!({"name": "web", "image": "x", "imagePullPolicy": "Sometimes"}),
         "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\""),
        (json!({"name": "web", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
         "spec.containers[0].volumeMounts[0].name: Not found: \"data\""),
        (json!({"name": "web", "image": "x", "env": [{"name": "A=B"}]}),
         "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"),
        (json!({"name": "web", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}),
         "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
        (json!({"name": "web", "image": "x", "readinessProbe": {}}),
         "spec.containers[0].readinessProbe: Required value: must specify a handler type"),
        (json!({"name": "Web", "image": "x"}),
         "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        (json!({"name": "web", "image": " nginx"}),
         "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace"),
        (json!({"name": "web", "image": "x", "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]}),
         "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\""),
    ];
    for (container, want) in cases {
        assert_eq!(
            create("", "pods", pod(json!([container]))),
            Err(format!("Pod \"web\" is invalid: {want}")),
            "{want}"
        );
    }
}

#[test]
fn pod_spec_errors() {
    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["spec"]["volumes"] = json!([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/x"}}]);
    assert_eq!(create("", "pods", p), Err("Pod \"web\" is invalid: spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type".to_string()));

    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["spec"]["tolerations"] = json!([{"key": "", "operator": "Equal", "value": "x"}]);
    let err = create("", "pods", p).expect_err("toleration");
    assert!(err.contains("spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""), "{err}");

    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["spec"]["nodeSelector"] = json!({"bad key": "v"});
    let err = create("", "pods", p).expect_err("node selector");
    assert!(err.starts_with("Pod \"web\" is invalid: spec.nodeSelector: Invalid value: \"bad key\": name part must consist of alphanumeric characters"), "{err}");

    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["spec"]["activeDeadlineSeconds"] = json!(0);
    assert_eq!(create("", "pods", p), Err("Pod \"web\" is invalid: spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".to_string()));

    let p = pod(json!([]));
    assert_eq!(
        create("", "pods", p),
        Err("Pod \"web\" is invalid: spec.containers: Required value".to_string())
    );

    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
    let err = create("", "pods", p).expect_err("ephemeral");
    assert!(
        err.ends_with("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{err}"
    );
}

#[test]
fn pod_metadata_errors() {
    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["metadata"]["labels"] = json!({"app": "-web"});
    let err = create("", "pods", p).expect_err("label");
    assert_eq!(err, "Pod \"web\" is invalid: metadata.labels: Invalid value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')");
    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["metadata"]["finalizers"] = json!(["custom"]);
    assert_eq!(
        create("", "pods", p),
        Err("Pod \"web\" is invalid: metadata.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified".to_string())
    );
    let mut p = pod(json!([{"name": "web", "image": "x"}]));
    p["metadata"] = json!({"namespace": "default"});
    assert_eq!(
        create("", "pods", p),
        Err(
            "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required"
                .to_string()
        )
    );
}

#[test]
fn pod_updates() {
    let old = create(
        "",
        "pods",
        pod(json!([{"name": "web", "image": "nginx:1.25"}])),
    )
    .expect("created");
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["spec"]["activeDeadlineSeconds"] = json!(60);
    new["metadata"]["labels"] = json!({"a": "b"});
    update("", "pods", &old, new).expect("image, deadline and labels may change");

    let mut renamed = old.clone();
    renamed["spec"]["containers"][0]["name"] = json!("other");
    let err = update("", "pods", &old, renamed).expect_err("rename");
    assert!(
        err.starts_with("Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
        "{err}"
    );
    assert!(
        err.contains("spec.containers[0].name"),
        "the diff names the field: {err}"
    );

    let mut added = old.clone();
    added["spec"]["containers"] =
        json!([{"name": "web", "image": "nginx"}, {"name": "b", "image": "busybox"}]);
    assert_eq!(update("", "pods", &old, added), Err("Pod \"web\" is invalid: spec.containers: Forbidden: pod updates may not add or remove containers".to_string()));

    let mut more_tolerations = old.clone();
    if let Some(list) = more_tolerations["spec"]["tolerations"].as_array_mut() {
        list.push(json!({"key": "x", "operator": "Exists"}));
    }
    let tolerated = update("", "pods", &old, more_tolerations).expect("additions are allowed");
    let mut fewer = tolerated.clone();
    fewer["spec"]["tolerations"] = json!([]);
    let err = update("", "pods", &tolerated, fewer).expect_err("removed toleration");
    assert!(err.contains("spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"), "{err}");

    let mut renamed_pod = old.clone();
    renamed_pod["metadata"]["name"] = json!("other");
    assert_eq!(
        update("", "pods", &old, renamed_pod),
        Err(
            "Pod \"other\" is invalid: metadata.name: Invalid value: \"other\": field is immutable"
                .to_string()
        )
    );
}

#[test]
fn pod_status_updates() {
    let pods = info("", "pods");
    let old = create("", "pods", pod(json!([{"name": "web", "image": "x"}]))).expect("created");
    let mut new = old.clone();
    new["status"] = json!({"phase": "Running", "podIP": "10.42.0.7", "podIPs": [{"ip": "10.42.0.7"}], "qosClass": "BestEffort",
        "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}}]});
    new["spec"]["containers"][0]["image"] = json!("sneaky");
    prepare_for_status_update(pods, &old, &mut new);
    assert_eq!(
        new["spec"], old["spec"],
        "spec changes are dropped on status updates"
    );
    validate_status_update(pods, &old, &new).expect("status update");

    let mut bad = new.clone();
    bad["status"]["podIPs"] = json!([{"ip": "10.42.0.999"}]);
    bad["status"]["qosClass"] = json!("Guaranteed");
    let err = validate_status_update(pods, &new, &bad)
        .expect_err("bad status")
        .message("Pod", "web");
    assert_eq!(err, "Pod \"web\" is invalid: [status.qosClass: Invalid value: \"Guaranteed\": field is immutable, status.podIPs[0]: Invalid value: \"10.42.0.999\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)]");
}

#[test]
fn deployment_selector_rules() {
    assert_eq!(
        create("apps", "deployments", deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "other"}))),
        Err("Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`".to_string())
    );
    let mut no_selector = deployment(json!({}), json!({"app": "web"}));
    no_selector["spec"]
        .as_object_mut()
        .map(|s| s.remove("selector"));
    assert_eq!(
        create("apps", "deployments", no_selector),
        Err("Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`]".to_string())
    );
    assert_eq!(
        create("apps", "deployments", deployment(json!({}), json!({"app": "web"}))),
        Err("Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment".to_string())
    );
    let old = create(
        "apps",
        "deployments",
        deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        ),
    )
    .expect("created");
    let mut changed = old.clone();
    changed["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
    changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "web2"});
    assert_eq!(
        update("apps", "deployments", &old, changed),
        Err("Deployment.apps \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable".to_string())
    );
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    update("apps", "deployments", &old, scaled).expect("scale and image change");
}

#[test]
fn deployment_spec_errors() {
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        create("apps", "deployments", d),
        Err("Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\", spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate']".to_string())
    );
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(
        create("apps", "deployments", d),
        Err("Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0".to_string())
    );
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxUnavailable": "150%"}});
    let err = create("apps", "deployments", d).expect_err("over 100%");
    assert!(err.ends_with("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"), "{err}");
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    d["spec"]["minReadySeconds"] = json!(700);
    assert_eq!(
        create("apps", "deployments", d),
        Err("Deployment.apps \"web\" is invalid: spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds".to_string())
    );
    let mut d = deployment(
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web", "bad key": "x"}),
    );
    d["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
    let err = create("apps", "deployments", d).expect_err("template label");
    assert!(
        err.starts_with(
            "Deployment.apps \"web\" is invalid: spec.template.labels: Invalid value: \"bad key\""
        ),
        "{err}"
    );
}

#[test]
fn daemonset_and_replicaset_errors() {
    let ds = json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
        "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}});
    assert_eq!(
        create("apps", "daemonsets", ds),
        Err("DaemonSet.apps \"agent\" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0".to_string())
    );
    let rs = json!({"metadata": {"name": "rs"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}});
    let err = create("apps", "replicasets", rs).expect_err("mismatch");
    assert_eq!(err, "ReplicaSet.apps \"rs\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`");
}

#[test]
fn jobs() {
    let job = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}});
    assert_eq!(
        create("batch", "jobs", job),
        Err("Job.batch \"pi\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string())
    );
    let old = create(
        "batch",
        "jobs",
        json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "pi", "image": "perl"}]}}}}),
    )
    .expect("created");
    assert_eq!(
        old["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        "6f5c1a4e-0000-4000-8000-000000000001"
    );
    let mut changed = old.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.40");
    let err = update("batch", "jobs", &old, changed).expect_err("template is immutable");
    assert!(
        err.starts_with("Job.batch \"pi\" is invalid: spec.template: Invalid value: "),
        "{err}"
    );
    assert!(err.ends_with(": field is immutable"), "{err}");
    let mut parallel = old.clone();
    parallel["spec"]["parallelism"] = json!(4);
    parallel["spec"]["activeDeadlineSeconds"] = json!(100);
    update("batch", "jobs", &old, parallel).expect("parallelism and deadline may change");

    let manual = json!({"metadata": {"name": "m"}, "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "m"}},
        "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "b"}]}}}});
    assert_eq!(
        create("batch", "jobs", manual),
        Err("Job.batch \"m\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`".to_string())
    );
}

#[test]
fn services() {
    let svc = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
    assert_eq!(
        create("", "services", svc(json!({"ports": [{"port": 80}, {"port": 443}]}))),
        Err("Service \"web\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]".to_string())
    );
    assert_eq!(
        create("", "services", svc(json!({}))),
        Err("Service \"web\" is invalid: spec.ports: Required value".to_string())
    );
    create("", "services", svc(json!({"clusterIP": "None"})))
        .expect("headless services need no ports");
    let mut bad_name = svc(json!({"ports": [{"port": 80}]}));
    bad_name["metadata"]["name"] = json!("1web");
    assert_eq!(
        create("", "services", bad_name),
        Err("Service \"1web\" is invalid: metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string())
    );
    assert_eq!(
        create("", "services", svc(json!({"type": "Bogus", "ports": [{"port": 80}]}))),
        Err("Service \"web\" is invalid: spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".to_string())
    );
    let err = create(
        "",
        "services",
        svc(json!({"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]})),
    )
    .expect_err("dup");
    assert_eq!(err, "Service \"web\" is invalid: spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}");
    assert_eq!(
        create("", "services", svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}))),
        Err("Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".to_string())
    );
    create(
        "",
        "services",
        svc(json!({"type": "ExternalName", "externalName": "db.example.com."})),
    )
    .expect("external name");

    let old = create(
        "",
        "services",
        svc(json!({"clusterIP": "10.43.0.10", "ports": [{"port": 80}]})),
    )
    .expect("created");
    assert_eq!(
        old["spec"]["clusterIPs"],
        json!(["10.43.0.10"]),
        "clusterIPs follow clusterIP"
    );
    let mut moved = old.clone();
    moved["spec"]["clusterIP"] = json!("10.43.0.11");
    assert_eq!(
        update("", "services", &old, moved),
        Err("Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.43.0.11\": may not change once set".to_string())
    );
    let mut no_ip = old.clone();
    no_ip["spec"].as_object_mut().map(|s| s.remove("clusterIP"));
    let kept = update("", "services", &old, no_ip);
    assert!(
        kept.is_err(),
        "dropping the cluster IP is refused: {kept:?}"
    );
}

#[test]
fn namespaces_nodes_and_small_kinds() {
    assert_eq!(
        create("", "namespaces", json!({"metadata": {"name": "my.ns"}})),
        Err("Namespace \"my.ns\" is invalid: metadata.name: Invalid value: \"my.ns\": must not contain dots".to_string())
    );
    assert_eq!(
        create(
            "",
            "namespaces",
            json!({"metadata": {"name": "ns", "namespace": "x"}})
        ),
        Err(
            "Namespace \"ns\" is invalid: metadata.namespace: Forbidden: not allowed on this type"
                .to_string()
        )
    );
    assert_eq!(
        create("", "configmaps", json!({"metadata": {"name": "c"}, "data": {"a/b": "x"}})),
        Err("ConfigMap \"c\" is invalid: data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string())
    );
    assert_eq!(
        create(
            "",
            "secrets",
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "AA=="}})
        ),
        Err("Secret \"tls\" is invalid: data[tls.key]: Required value".to_string())
    );
    let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "Sometimes"}]}});
    let err = create("", "nodes", node).expect_err("taints");
    assert_eq!(err, "Node \"n1\" is invalid: [spec.taints[1]: Duplicate value: \"a=:NoSchedule\": taints must be unique by key and effect pair, spec.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"]");
    assert_eq!(
        create("coordination.k8s.io", "leases", json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}})),
        Err("Lease.coordination.k8s.io \"l\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0".to_string())
    );
    assert_eq!(
        create("", "events", json!({"metadata": {"name": "e", "namespace": "demo"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}})),
        Err("Event \"e\" is invalid: involvedObject.namespace: Invalid value: \"other\": does not match event.namespace".to_string())
    );
}

#[test]
fn immutable_configmaps_and_secrets() {
    let old = create(
        "",
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true}),
    )
    .expect("created");
    let mut changed = old.clone();
    changed["data"]["a"] = json!("2");
    assert_eq!(
        update("", "configmaps", &old, changed),
        Err("ConfigMap \"c\" is invalid: data: Forbidden: field is immutable when `immutable` is set".to_string())
    );
    let old = create(
        "",
        "secrets",
        json!({"metadata": {"name": "s"}, "data": {"a": "AA=="}}),
    )
    .expect("created");
    let mut retyped = old.clone();
    retyped["type"] = json!("kubernetes.io/basic-auth");
    retyped["data"] = json!({"username": "YQ=="});
    assert_eq!(
        update("", "secrets", &old, retyped),
        Err("Secret \"s\" is invalid: type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable".to_string())
    );
}

#[test]
fn type_errors_are_caught_before_validation() {
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": "3"}});
    let decode = check_types(info("apps", "deployments"), &d).expect_err("string replicas");
    assert_eq!(decode.to_string(), "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32");
    let errs = validate_create(info("apps", "deployments"), &d)
        .expect_err("also refused by validate_create");
    assert_eq!(errs.0[0].kind, FieldErrorKind::TypeInvalid);
    assert_eq!(errs.0[0].kind.reason(), "FieldValueTypeInvalid");
}

#[test]
fn status_causes_carry_reason_field_and_body() {
    let errs = validate_create(info("", "pods"), &json!({"metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c"}], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30}}))
        .expect_err("invalid");
    let causes = errs.causes();
    assert!(
        causes.contains(&(
            "FieldValueRequired",
            "Required value".to_string(),
            "spec.containers[0].image".to_string()
        )),
        "{causes:?}"
    );
    assert!(causes.contains(&(
        "FieldValueRequired",
        "Required value".to_string(),
        "spec.containers[0].imagePullPolicy".to_string()
    )));
}

#[test]
fn bindings() {
    validate_binding(&json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}})).expect("valid");
    let errs = validate_binding(&json!({"target": {"kind": "Pod"}})).expect_err("invalid");
    assert_eq!(errs.message("Binding", "p"), "Binding \"p\" is invalid: [target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]");
}

#[test]
fn hostile_input_is_refused_not_panicked_on() {
    let pods = info("", "pods");
    for hostile in [
        json!(null),
        json!([]),
        json!("pod"),
        json!({"spec": []}),
        json!({"metadata": []}),
        json!({"spec": {"containers": [null, 5, "x"]}}),
        json!({"spec": {"containers": [{"name": "a".repeat(100_000), "image": "x"}]}}),
        json!({"metadata": {"name": "a", "labels": {"k": "v".repeat(1000)}, "annotations": {"k": "v".repeat(300_000)}}}),
    ] {
        let mut obj = hostile.clone();
        prepare_for_create(pods, &mut obj);
        apply_defaults(pods, &mut obj);
        assert!(validate_create(pods, &obj).is_err(), "{hostile:.60}");
    }
}

use super::*;
use crate::registry::find;
use serde_json::json;

fn deployments() -> &'static ResourceInfo {
    find("apps", "v1", "deployments").expect("deployments")
}

fn pods() -> &'static ResourceInfo {
    find("", "v1", "pods").expect("pods")
}

fn smp(info: &ResourceInfo, original: Value, patch: Value) -> Value {
    strategic_merge(info, &original, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox:1.36"}
                ]}
            }
        }
    })
}

#[test]
fn kubectl_apply_changes_image_and_replicas() {
    // The body `kubectl apply` sends after the image and replicas change in the manifest.
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"}},
        "spec": {"replicas": 5, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.27", "name": "web"}]}}}
    });
    let merged = smp(deployments(), deployment(), patch);
    assert_eq!(merged["spec"]["replicas"], 5);
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(containers[0]["env"][1], json!({"name": "B", "value": "2"}));
    assert_eq!(
        containers[1],
        json!({"name": "sidecar", "image": "busybox:1.36"})
    );
    assert_eq!(
        merged["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":true}"
    );
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"app": "web"}),
        "untouched maps survive"
    );
}

#[test]
fn new_list_items_are_appended_and_existing_ones_merged() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "metrics", "image": "prom/exporter"},
        {"name": "web", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "one"}]}
    ]}}}});
    let merged = smp(deployments(), deployment(), patch);
    let containers = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // Patch items come in patch order, server-only items keep their place after them.
    assert_eq!(names, ["metrics", "web", "sidecar"]);
    let web = &containers[1];
    assert_eq!(web["image"], "nginx:1.25");
    assert_eq!(
        web["env"],
        json!([{"name": "C", "value": "3"}, {"name": "A", "value": "one"}, {"name": "B", "value": "2"}])
    );
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web",
        "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
        "env": [{"name": "A", "value": "x"}]}],
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}}}});
    let merged = smp(deployments(), deployment(), patch);
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], "sidecar");
    assert_eq!(
        containers[1]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "x"}])
    );
}

#[test]
fn delete_directive_removes_list_items_by_merge_key() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "$patch": "delete"},
        {"name": "web", "ports": [{"containerPort": 80, "$patch": "delete"}, {"containerPort": 443, "protocol": "TCP"}]}
    ]}}}});
    let merged = smp(deployments(), deployment(), patch);
    let containers = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(containers.len(), 1);
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 443, "protocol": "TCP"}])
    );
}

#[test]
fn replace_directive_in_a_list_replaces_it() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "alpine"}
    ]}}}});
    let merged = smp(deployments(), deployment(), patch);
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "alpine"}])
    );
}

#[test]
fn replace_and_delete_directives_on_maps() {
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "tier": "front"}}});
    let merged = smp(deployments(), deployment(), patch);
    assert_eq!(merged["metadata"]["labels"], json!({"tier": "front"}));

    let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
    let merged = smp(deployments(), deployment(), patch);
    assert_eq!(
        merged["spec"]["strategy"],
        json!({}),
        "upstream leaves an empty map"
    );
}

#[test]
fn null_deletes_a_field() {
    let patch = json!({"metadata": {"annotations": null, "labels": {"app": null, "new": "x"}}});
    let merged = smp(deployments(), deployment(), patch);
    assert!(merged["metadata"].get("annotations").is_none());
    assert_eq!(merged["metadata"]["labels"], json!({"new": "x"}));
}

#[test]
fn retain_keys_switches_deployment_strategy() {
    // `kubectl apply` switching RollingUpdate to Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
    let merged = smp(deployments(), deployment(), patch);
    assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    // A key set in the patch but absent from $retainKeys is an error.
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}});
    assert_eq!(
        strategic_merge(deployments(), &deployment(), &bad),
        Err(PatchError::BadRetainKeys)
    );
    let not_list = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
    assert_eq!(
        strategic_merge(deployments(), &deployment(), &not_list),
        Err(PatchError::BadRetainKeys)
    );
}

#[test]
fn tolerations_and_args_are_replaced_not_merged() {
    let pod = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}],
        "containers": [{"name": "c", "image": "x", "args": ["1", "2"]}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}],
        "containers": [{"name": "c", "args": ["3"]}]}});
    let merged = smp(pods(), pod, patch);
    assert_eq!(
        merged["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
    assert_eq!(merged["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let original = json!({"metadata": {"name": "p", "finalizers": ["a.io/x", "b.io/y"]}});
    let merged = smp(
        pods(),
        original.clone(),
        json!({"metadata": {"finalizers": ["b.io/y", "c.io/z"]}}),
    );
    assert_eq!(
        merged["metadata"]["finalizers"],
        json!(["a.io/x", "b.io/y", "c.io/z"])
    );
    let merged = smp(
        pods(),
        original,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x"]}}),
    );
    assert_eq!(merged["metadata"]["finalizers"], json!(["b.io/y"]));
}

#[test]
fn owner_references_merge_by_uid_and_conditions_by_type() {
    let original = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
    let patch = json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let merged = smp(pods(), original, patch);
    assert_eq!(
        merged["metadata"]["ownerReferences"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        merged["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let services = find("", "v1", "services").expect("services");
    let original = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}], "selector": {"app": "a"}}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "name": "https"}]}});
    let merged = smp(services, original, patch);
    assert_eq!(
        merged["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090, "name": "http"}, {"port": 443, "name": "https"}])
    );
}

#[test]
fn volumes_and_mounts_merge_and_retain_keys_of_new_items_are_dropped() {
    let original = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}});
    let patch = json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "cfg", "configMap": {"name": "app"}},
        {"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/srv"}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}]}});
    let merged = smp(pods(), original, patch);
    assert_eq!(
        merged["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "app"}}, {"name": "data", "hostPath": {"path": "/srv"}}])
    );
    assert_eq!(
        merged["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "cfg", "mountPath": "/etc/app"}, {"name": "data", "mountPath": "/data"}])
    );
}

#[test]
fn values_of_another_type_are_replaced() {
    let merged = smp(
        deployments(),
        deployment(),
        json!({"spec": {"replicas": "5"}}),
    );
    assert_eq!(
        merged["spec"]["replicas"], "5",
        "type errors are left for validation"
    );
    let merged = smp(
        pods(),
        json!({"spec": {"nodeSelector": "x"}}),
        json!({"spec": {"nodeSelector": {"a": "b"}}}),
    );
    assert_eq!(merged["spec"]["nodeSelector"], json!({"a": "b"}));
}

#[test]
fn malformed_patches_are_refused_with_upstream_messages() {
    let cases = [
        (json!([]), "invalid JSON document"),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "does not contain declared merge key: name",
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "explode"}]}}}}),
            "unknown patch type: explode",
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}}),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            json!({"metadata": {"$patch": "bogus"}}),
            "unknown patch type: bogus",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList": ["x"]}}),
            "invalid patch format of primitive list",
        ),
        (
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": "web"}}}}),
            "expected a list, but received a string",
        ),
        (
            json!({"metadata": {"finalizers": ["a", 1]}}),
            "list element types are not identical",
        ),
    ];
    for (patch, want) in cases {
        let mut original = deployment();
        original["metadata"]["finalizers"] = json!(["x.io/y"]);
        let err = strategic_merge(deployments(), &original, &patch).expect_err(want);
        assert!(
            err.to_string().contains(want),
            "{err} does not contain {want}"
        );
        assert!(matches!(err.status_code(), 400 | 422));
    }
    let mut empty_finalizers = deployment();
    empty_finalizers["metadata"]["finalizers"] = json!([]);
    let err = strategic_merge(
        deployments(),
        &empty_finalizers,
        &json!({"metadata": {"finalizers": [["a"]]}}),
    )
    .expect_err("list of lists");
    assert_eq!(err, PatchError::ListOfLists);
    assert_eq!(err.to_string(), "lists of lists are not supported");
    assert_eq!(PatchError::ListOfLists.status_code(), 422);
    assert_eq!(PatchError::BadJsonDoc.status_code(), 400);
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"name": "sidecar", "image": "x"}, {"name": "web", "image": "y"}]}}}});
    assert_eq!(
        strategic_merge(deployments(), &deployment(), &patch),
        Err(PatchError::BadSetElementOrder)
    );
}

#[test]
fn unknown_fields_merge_like_untagged_fields() {
    let original = json!({"spec": {"custom": {"a": 1, "list": [1, 2]}}});
    let merged = smp(
        pods(),
        original,
        json!({"spec": {"custom": {"b": 2, "list": [3]}}}),
    );
    assert_eq!(
        merged["spec"]["custom"],
        json!({"a": 1, "b": 2, "list": [3]})
    );
}

#[test]
fn patch_does_not_modify_its_inputs() {
    let original = deployment();
    let patch = json!({"spec": {"replicas": 9}});
    let before = (original.clone(), patch.clone());
    let _ = strategic_merge(deployments(), &original, &patch);
    assert_eq!((original, patch), before);
}

#[test]
fn json_merge_patch_follows_rfc7386() {
    let merged = json_merge_patch(
        &deployment(),
        &json!({"spec": {"replicas": 3, "strategy": null,
        "template": {"spec": {"containers": [{"name": "only"}]}}}}),
    );
    assert_eq!(merged["spec"]["replicas"], 3);
    assert!(merged["spec"].get("strategy").is_none());
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only"}]),
        "lists are replaced"
    );
    assert_eq!(
        merged["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
}

#[test]
fn json_patch_applies_and_reports_failures() {
    let patched = json_patch(
        &deployment(),
        &json!([
            {"op": "replace", "path": "/spec/replicas", "value": 7},
            {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
            {"op": "test", "path": "/metadata/name", "value": "web"}
        ]),
    )
    .expect("patch applies");
    assert_eq!(patched["spec"]["replicas"], 7);
    assert_eq!(patched["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let failed = json_patch(
        &deployment(),
        &json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
    )
    .expect_err("test fails");
    assert!(matches!(failed, PatchError::JsonPatchFailed(_)));
    assert_eq!(failed.status_code(), 422);

    let missing = json_patch(
        &deployment(),
        &json!([{"op": "remove", "path": "/spec/nothing"}]),
    )
    .expect_err("missing path");
    assert_eq!(missing.status_code(), 422);

    for bad in [
        json!({"op": "add"}),
        json!([{"op": "explode", "path": "/a"}]),
        json!([{"op": "add", "path": "/a"}]),
    ] {
        let err = json_patch(&deployment(), &bad).expect_err("malformed");
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)), "{err:?}");
        assert_eq!(err.status_code(), 400);
    }

    let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "Deployment"}))
        .collect();
    let err = json_patch(&deployment(), &Value::Array(many)).expect_err("too many");
    assert_eq!(
        err.to_string(),
        "The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
}

#[test]
fn kubectl_apply_removing_a_container_and_an_env_var() {
    // The three-way patch kubectl sends when the sidecar and env var A leave the manifest.
    let patch = json!({"spec": {"template": {"spec": {
    "$setElementOrder/containers": [{"name": "web"}],
    "containers": [
        {"$setElementOrder/env": [{"name": "B"}], "env": [{"$patch": "delete", "name": "A"}], "name": "web"},
        {"$patch": "delete", "name": "sidecar"}
    ]}}}});
    let merged = smp(deployments(), deployment(), patch);
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}]));
    assert_eq!(containers[0]["image"], "nginx:1.25");
}

#[test]
fn set_element_order_for_scalar_lists() {
    let original = json!({"metadata": {"finalizers": ["a.io/x", "b.io/y"]}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c.io/z", "b.io/y", "a.io/x"], "finalizers": ["c.io/z"]}});
    let merged = smp(pods(), original, patch);
    assert_eq!(
        merged["metadata"]["finalizers"],
        json!(["c.io/z", "b.io/y", "a.io/x"])
    );
}

#[test]
fn json_patch_copy_bomb_is_refused_before_it_allocates() {
    // CVE-2019-1002100: each copy doubles the document; 60 of them would need exabytes.
    let original = json!({"data": {"a": "x".repeat(100 * 1024)}});
    let mut ops = vec![json!({"op": "copy", "from": "/data", "path": "/data/b"})];
    for i in 0..60 {
        ops.push(json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}));
    }
    let started = std::time::Instant::now();
    let err = json_patch(&original, &Value::Array(ops)).expect_err("copy bomb");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        matches!(err, PatchError::CopySizeExceeded { limit, .. } if limit == DEFAULT_COPY_SIZE_LIMIT),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("Unable to complete the copy, the accumulated size increase of copy is "));
    assert_eq!(err.status_code(), 422);

    // Copies below the limit still work, and the limit counts encoded JSON bytes.
    let small = json!({"a": {"b": "12345"}});
    let ok = json_patch_limited(
        &small,
        &json!([{"op": "copy", "from": "/a", "path": "/c"}]),
        encoded_len(&small["a"]),
    )
    .expect("exactly at the limit");
    assert_eq!(ok["c"], json!({"b": "12345"}));
    let over = json_patch_limited(
        &small,
        &json!([{"op": "copy", "from": "/a", "path": "/c"}, {"op": "copy", "from": "/a", "path": "/d"}]),
        encoded_len(&small["a"]) + 1,
    );
    assert!(
        matches!(over, Err(PatchError::CopySizeExceeded { .. })),
        "{over:?}"
    );
}

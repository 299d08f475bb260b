//! Field sets, comparisons and the manager rules, against upstream's behaviour.

use serde_json::{json, Value};

use super::fieldset::Set;
use super::managers::{self, Managed, Operation, Writer};
use super::schema;
use super::typed;

const NOW: &str = "2026-12-07T23:00:00Z";

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": image,
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}]
                }]}
            }
        }
    })
}

fn ty() -> schema::Ty {
    schema::root("apps/v1", "Deployment")
}

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        subresource: "",
        api_version: "apps/v1",
    }
}

fn entry<'a>(managed: &'a Managed, manager: &str, op: Operation) -> &'a managers::Entry {
    managed
        .entries
        .iter()
        .find(|e| e.manager == manager && e.operation == op)
        .unwrap_or_else(|| panic!("no {op:?} entry for {manager}: {managed:?}"))
}

#[test]
fn field_set_of_a_deployment_is_upstreams() {
    let skip = managers::untracked("");
    let set = typed::field_set(&deployment(2, "nginx"), ty(), Some(&skip));
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }}}
                }
            }
        })
    );
}

#[test]
fn sets_and_atomic_lists() {
    let object = json!({"metadata": {"finalizers": ["a", "b"]},
                        "spec": {"template": {"spec": {"containers": [
                            {"name": "c", "args": ["x", "y"]}]}}}});
    let set = typed::field_set(&object, ty(), None);
    let encoded = set.to_fields_v1();
    assert_eq!(
        encoded["f:metadata"]["f:finalizers"],
        json!({"v:\"a\"": {}, "v:\"b\"": {}})
    );
    // args is atomic: owned as one leaf.
    assert_eq!(
        encoded["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:args"],
        json!({})
    );
}

#[test]
fn compare_finds_added_removed_modified() {
    let old = deployment(2, "nginx");
    let mut new = deployment(3, "nginx");
    new["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "B", "value": "2"}]);
    new["metadata"]["labels"]["tier"] = json!("front");
    let c = typed::compare(&old, &new, ty(), Some(&managers::untracked("")));
    let text = |s: &Set| -> Vec<String> {
        s.paths()
            .iter()
            .map(Vec::as_slice)
            .map(super::fieldset::path_string)
            .collect()
    };
    assert_eq!(text(&c.modified), vec![".spec.replicas"]);
    assert!(text(&c.added).contains(&".metadata.labels.tier".to_string()));
    assert!(text(&c.added)
        .contains(&".spec.template.spec.containers[name=\"web\"].env[name=\"B\"].value".into()));
    assert!(text(&c.removed)
        .contains(&".spec.template.spec.containers[name=\"web\"].env[name=\"A\"]".into()));
}

#[test]
fn merge_keeps_live_items_and_replaces_atomic_values() {
    let live = deployment(2, "nginx");
    let config = json!({"spec": {
        "selector": {"matchLabels": {"x": "y"}},
        "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2"}, {"name": "side", "image": "busybox"}]}}}});
    let merged = typed::merge(&live, &config, ty());
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
    assert_eq!(containers[1]["name"], "side");
    // The selector is atomic: replaced, not merged.
    assert_eq!(
        merged["spec"]["selector"],
        json!({"matchLabels": {"x": "y"}})
    );
    assert_eq!(merged["spec"]["replicas"], 2);
}

#[test]
fn update_moves_changed_fields_and_merges_its_own_entries() {
    let mut managed = Managed::default();
    let empty = json!({});
    let created = deployment(2, "nginx");
    managers::update(
        &mut managed,
        &empty,
        &created,
        ty(),
        &writer("creator"),
        NOW,
    );
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    managers::update(
        &mut managed,
        &created,
        &scaled,
        ty(),
        &writer("scaler"),
        NOW,
    );
    let mut scaled_again = scaled.clone();
    scaled_again["spec"]["replicas"] = json!(6);
    managers::update(
        &mut managed,
        &scaled,
        &scaled_again,
        ty(),
        &writer("scaler"),
        NOW,
    );
    assert_eq!(
        managed.entries.len(),
        2,
        "one entry per manager: {managed:?}"
    );
    let scaler = entry(&managed, "scaler", Operation::Update);
    assert_eq!(
        scaler.set.to_fields_v1(),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let creator = entry(&managed, "creator", Operation::Update);
    assert!(creator.set.to_fields_v1()["f:spec"]
        .get("f:replicas")
        .is_none());
    // A no-op update records nothing.
    managers::update(
        &mut managed,
        &scaled_again,
        &scaled_again,
        ty(),
        &writer("noop"),
        NOW,
    );
    assert_eq!(managed.entries.len(), 2);
}

#[test]
fn apply_removes_what_it_stopped_applying_unless_owned() {
    let mut managed = Managed::default();
    let mut config = deployment(2, "nginx");
    config["metadata"]["labels"]["extra"] = json!("yes");
    config["metadata"]["annotations"] = json!({"note": "n"});
    let live =
        managers::apply(&mut managed, None, &config, ty(), &writer("a"), false, NOW).unwrap();
    assert_eq!(live["metadata"]["labels"]["extra"], "yes");
    // Another manager updates the annotation: it then owns it too.
    let mut touched = live.clone();
    touched["metadata"]["annotations"]["note"] = json!("changed");
    managers::update(&mut managed, &live, &touched, ty(), &writer("other"), NOW);
    // Re-apply without the label and the annotation: the label goes, the annotation (owned
    // by "other") stays and is released by "a".
    let mut config2 = deployment(2, "nginx");
    config2["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let after = managers::apply(
        &mut managed,
        Some(&touched),
        &config2,
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap();
    assert!(after["metadata"]["labels"].get("extra").is_none());
    assert_eq!(after["metadata"]["annotations"]["note"], "changed");
    let mine = entry(&managed, "a", Operation::Apply).set.to_fields_v1();
    assert!(mine["f:metadata"].get("f:annotations").is_none());
}

#[test]
fn apply_conflicts_with_other_owners_and_force_takes_over() {
    let mut managed = Managed::default();
    let live = managers::apply(
        &mut managed,
        None,
        &deployment(2, "nginx"),
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    managers::update(&mut managed, &live, &scaled, ty(), &writer("kubectl"), NOW);
    let error = managers::apply(
        &mut managed.clone(),
        Some(&scaled),
        &deployment(3, "nginx"),
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        error.message(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
    );
    // The same value is no conflict: both own it.
    let mut shared = managed.clone();
    managers::apply(
        &mut shared,
        Some(&scaled),
        &deployment(5, "nginx"),
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap();
    assert!(shared.entries.iter().filter(|e| !e.set.is_empty()).count() == 2);
    // Forced: "a" takes replicas, and kubectl's entry, left empty, is dropped.
    let forced = managers::apply(
        &mut managed,
        Some(&scaled),
        &deployment(3, "nginx"),
        ty(),
        &writer("a"),
        true,
        NOW,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(managed.entries.iter().all(|e| e.manager != "kubectl"));
    // Two conflicting fields from two managers: upstream's multi-line message.
    let mut two = managed.clone();
    let mut changed = forced.clone();
    changed["spec"]["replicas"] = json!(9);
    managers::update(&mut two, &forced, &changed, ty(), &writer("m1"), NOW);
    let mut changed2 = changed.clone();
    changed2["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
    managers::update(&mut two, &changed, &changed2, ty(), &writer("m2"), NOW);
    let error = managers::apply(
        &mut two,
        Some(&changed2),
        &deployment(3, "nginx"),
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        error.message(),
        "Apply failed with 2 conflicts: conflicts with \"m1\" using apps/v1:\n- .spec.replicas\nconflicts with \"m2\" using apps/v1:\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn empty_apply_leaves_no_entry_and_before_first_apply_owns_old_fields() {
    let mut managed = Managed::default();
    let live = deployment(2, "nginx");
    let config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"}});
    managers::apply(
        &mut managed,
        Some(&live),
        &config,
        ty(),
        &writer("a"),
        false,
        NOW,
    )
    .unwrap();
    assert!(managed.entries.iter().all(|e| e.manager != "a"));
    let before = entry(&managed, managers::BEFORE_FIRST_APPLY, Operation::Update);
    assert!(!before.set.is_empty());
    assert!(managed.entries.iter().all(|e| !e.set.is_empty()));
}

#[test]
fn update_managers_are_capped_into_ancient_changes() {
    let mut managed = Managed::default();
    let mut object = json!({"metadata": {"labels": {}}});
    for i in 0..14 {
        let mut next = object.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        let name = format!("m{i:02}");
        let time = format!("2026-12-07T23:00:{i:02}Z");
        managers::update(&mut managed, &object, &next, ty(), &writer(&name), &time);
        object = next;
    }
    let updates = managed
        .entries
        .iter()
        .filter(|e| e.operation == Operation::Update)
        .count();
    assert_eq!(updates, managers::MAX_UPDATE_MANAGERS);
    let ancient = entry(&managed, managers::ANCIENT_CHANGES, Operation::Update);
    assert!(ancient.set.to_fields_v1()["f:metadata"]["f:labels"]
        .get("f:l1")
        .is_some());
    // The oldest of the version is kept as is, as upstream.
    assert!(managed.entries.iter().any(|e| e.manager == "m00"));
}

#[test]
fn managed_fields_round_trip_and_reset() {
    let mut managed = Managed::default();
    managers::update(
        &mut managed,
        &json!({}),
        &deployment(1, "x"),
        ty(),
        &writer("kubectl-create"),
        NOW,
    );
    let encoded = managed.encode();
    assert_eq!(encoded[0]["manager"], "kubectl-create");
    assert_eq!(encoded[0]["operation"], "Update");
    assert_eq!(encoded[0]["fieldsType"], "FieldsV1");
    assert_eq!(encoded[0]["time"], NOW);
    assert_eq!(Managed::decode(Some(&encoded)), Some(managed));
    assert!(Managed::decode(Some(&json!([{"operation": "Bad"}]))).is_none());
    assert!(super::is_reset(Some(&json!([]))));
    assert!(super::is_reset(Some(&json!([{}]))));
    assert!(!super::is_reset(None));
}

#[test]
fn manager_from_user_agent_prefix() {
    assert_eq!(
        super::manager_of(None, Some("kubectl/v1.31.0 (linux/amd64) kubernetes/abc")),
        "kubectl"
    );
    assert_eq!(
        super::manager_of(None, Some("Python-urllib/3.12")),
        "Python-urllib"
    );
    assert_eq!(super::manager_of(Some("mine"), Some("kubectl/v1")), "mine");
    assert_eq!(super::manager_of(None, None), "");
}

//! Property tests of the three patch kinds: no patch document, however malformed, makes them
//! panic against any object; JSON merge patch obeys RFC 7386's laws; strategic merge patch
//! agrees with merge patch where upstream says they coincide (no lists, no directives, no
//! tagged fields).
//!
//! Long run: `PROPTEST_CASES=20000 cargo test -p skiff-types --test fuzz_patch`.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use skiff_types::patch::{
    json_merge_patch, json_patch, schema, strategic_merge_typed, MAX_JSON_PATCH_OPERATIONS,
};

/// Keys that steer the strategic merge code into its interesting paths (tagged lists, merge
/// keys, directives) next to plain ones.
const KEYS: &[&str] = &[
    "a",
    "b",
    "name",
    "metadata",
    "spec",
    "status",
    "containers",
    "initContainers",
    "ports",
    "containerPort",
    "env",
    "volumes",
    "finalizers",
    "ownerReferences",
    "uid",
    "conditions",
    "type",
    "podIPs",
    "ip",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$setElementOrder/",
    "$setElementOrderx",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/",
    "$deleteFromPrimitiveList",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(&["replace", "delete", "merge", "web", "x", ""][..])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

/// Any JSON, with keys from [`KEYS`] most of the time.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    btree_map(key(), value(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// JSON whose object members are never `null` (what a merge patch can produce: RFC 7386 has
/// no way to set a member to `null`). Arrays may hold anything.
fn null_free() -> impl Strategy<Value = Value> {
    let leaf = scalar().prop_filter("null member", |v| !v.is_null());
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            vec(value(), 0..4).prop_map(Value::Array),
            btree_map("[a-c]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON over a small key space (so documents overlap) without directives or lists of objects.
fn plain() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        (0i64..3).prop_map(Value::from),
        "[xy]".prop_map(Value::from),
        vec((0i64..3).prop_map(Value::from), 0..3).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        btree_map("[a-c]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

/// The merge patch that turns `a` into `b` (RFC 7386 section 3, read backwards).
fn merge_diff(a: &Value, b: &Value) -> Value {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return b.clone();
    };
    let mut patch = Map::new();
    for k in a.keys() {
        if !b.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    for (k, bv) in b {
        match a.get(k) {
            Some(av) if av == bv => {}
            Some(av) => {
                patch.insert(k.clone(), merge_diff(av, bv));
            }
            None => {
                patch.insert(k.clone(), bv.clone());
            }
        }
    }
    Value::Object(patch)
}

/// JSON patch operations, mostly well-formed, often pointing nowhere.
fn json_patch_doc() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        prop::sample::select(
            &[
                "",
                "/",
                "/a",
                "/a/0",
                "/a/-",
                "/a/b",
                "/0",
                "/-",
                "/a/99999999999999999999",
                "/~0",
                "/~1",
                "/~2",
                "~",
                "a",
                "/a/~",
                "/a/-1",
                "/a/01",
            ][..]
        )
        .prop_map(str::to_owned),
        "(/[a-c0-9~-]{0,3}){0,4}",
        any::<String>(),
    ];
    let op = (
        prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "nope"][..]),
        path.clone(),
        path,
        prop::option::of(value()),
    )
        .prop_map(|(op, path, from, value)| {
            let mut o = json!({"op": op, "path": path, "from": from});
            if let Some(v) = value {
                o["value"] = v;
            }
            o
        });
    prop_oneof![
        4 => vec(op, 0..6).prop_map(Value::Array),
        1 => value(),
    ]
}

/// The fuzz budget; failures are kept in `proptest-regressions/fuzz_patch.txt` (committed, replayed
/// before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(
        cases,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_patch.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config(512))]

    /// Strategic merge patch: any patch against any object of a typed root is a result or an
    /// error, never a panic; an error is a 4xx.
    #[test]
    fn strategic_merge_never_panics(
        kind in prop::sample::select(&["Pod", "Node", "Deployment", "Service", "ConfigMap"][..]),
        original in object(),
        patch in prop_oneof![4 => object(), 1 => value()],
    ) {
        match strategic_merge_typed(schema::root(kind), &original, &patch) {
            Ok(merged) => prop_assert!(merged.is_object()),
            Err(e) => prop_assert!(matches!(e.status_code(), 400 | 422), "{e}"),
        }
    }

    /// Without lists of objects, directives or tagged fields, a strategic merge patch is a JSON
    /// merge patch (upstream's documented relation between the two).
    #[test]
    fn strategic_merge_matches_merge_patch_on_plain_documents(
        original in btree_map("[a-c]", plain(), 0..4),
        patch in btree_map("[a-c]", plain(), 0..4),
    ) {
        let original = Value::Object(original.into_iter().collect());
        let patch = Value::Object(patch.into_iter().collect());
        let smp = strategic_merge_typed(schema::root("ConfigMap"), &original, &patch);
        prop_assert_eq!(smp, Ok(json_merge_patch(&original, &patch)));
    }

    /// JSON patch: any document against any value is a result or an error, never a panic.
    #[test]
    fn json_patch_never_panics(original in value(), patch in json_patch_doc()) {
        if let Err(e) = json_patch(&original, &patch) {
            prop_assert!(matches!(e.status_code(), 400 | 422), "{e}");
        }
    }

    /// JSON patch: the operations the json-patch crate's diff produces turn `a` into `b`, and
    /// a `test` of the whole document against itself passes.
    #[test]
    fn json_patch_applies_its_diff(a in value(), b in value()) {
        let ops = serde_json::to_value(json_patch::diff(&a, &b)).expect("patch serialises");
        prop_assert_eq!(json_patch(&a, &ops), Ok(b));
        let test = json!([{"op": "test", "path": "", "value": a.clone()}]);
        prop_assert_eq!(json_patch(&a, &test), Ok(a));
    }

    /// RFC 7386: applying the merge diff of A → B to A gives B.
    #[test]
    fn merge_patch_of_the_diff_gives_the_target(
        a in prop_oneof![value(), null_free()],
        b in null_free(),
    ) {
        prop_assert_eq!(json_merge_patch(&a, &merge_diff(&a, &b)), b);
    }

    /// RFC 7386: a merge patch applied twice changes nothing more than applied once.
    #[test]
    fn merge_patch_is_idempotent(a in value(), patch in value()) {
        let once = json_merge_patch(&a, &patch);
        prop_assert_eq!(json_merge_patch(&once, &patch), once);
    }
}

#[test]
fn json_patch_operation_limit_is_checked_before_parsing() {
    let ops = Value::Array(vec![json!({"op": "bogus"}); MAX_JSON_PATCH_OPERATIONS + 1]);
    let err = json_patch(&json!({}), &ops).unwrap_err();
    // Upstream answers too many operations with 413 Request Entity Too Large.
    assert_eq!(err.status_code(), 413);
    assert!(err.to_string().contains("10000"), "{err}");
}

/// Hand-picked hostile patches, replayed every run.
#[test]
fn hostile_patch_seeds() {
    let pod = json!({
        "metadata": {"name": "p", "finalizers": ["a", "b"]},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
    });
    let seeds = [
        json!({"spec": {"containers": [{"$patch": "merge", "name": "c"}]}}),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        json!({"spec": {"containers": [[1]]}}),
        json!({"spec": {"containers": [1, {"name": "c"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "x"}], "containers": [{"name": "c"}, {"name": "d"}]}}),
        json!({"spec": {"$setElementOrder/containers": 5}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", {"x": 1}]}}),
        json!({"metadata": {"$retainKeys": "name"}}),
        json!({"metadata": {"$retainKeys": [], "name": "q"}}),
        json!({"$patch": 7}),
        json!({"spec": {"containers": [{"name": "c", "ports": [{"$patch": "replace"}, {"containerPort": "80"}]}]}}),
    ];
    for patch in seeds {
        let _ = strategic_merge_typed(schema::root("Pod"), &pod, &patch);
        let _ = json_merge_patch(&pod, &patch);
    }
}

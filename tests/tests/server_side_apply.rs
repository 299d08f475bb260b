//! Server-side apply with field ownership, driven by real kubectl against
//! `skiff server --disable-agent`: create by apply, removal of a field the manager stopped
//! applying, conflicts between managers (upstream's 409 text) and `--force-conflicts`,
//! `--field-manager`, `get --show-managed-fields`, client-side apply then updates, and a
//! Deployment's replicas scaled by `kubectl scale` then re-applied (a conflict).

use serde_json::Value;
use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = k.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} -o json: {e}: {out}"))
}

/// The `managedFields` entry of `manager` with `operation`, if any.
fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn configmap(data: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n  labels:\n    app: demo\ndata:\n",
    );
    for (k, v) in data {
        text.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    text
}

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
"
    )
}

#[test]
fn kubectl_server_side_apply_tracks_ownership() {
    let Some(bin) = kubectl::find("1.32") else {
        skiff_tests::skip("kubectl 1.32 is not installed");
        return;
    };
    let dir = skiff_tests::temp_dir("ssa");
    let server = SkiffProcess::start(&dir.path().join("data"));
    let k = Kubectl::new(&bin, &server.kubeconfig());
    let apply = |manager: &str, text: &str, extra: &[&str]| {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-f",
            "-",
        ];
        args.extend(extra);
        k.run_with_input(&args, text)
    };

    // SSA create: alice owns what she applied.
    let run = apply("alice", &configmap(&[("a", "1"), ("b", "2")]), &[]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("serverside-applied"), "{}", run.stdout);
    let cm = json(&k, &["get", "cm", "settings", "--show-managed-fields"]);
    let alice = entry(&cm, "alice", "Apply").expect("alice's Apply entry");
    assert_eq!(alice["fieldsType"], "FieldsV1");
    assert_eq!(alice["apiVersion"], "v1");
    assert!(alice["time"].is_string(), "{alice}");
    assert_eq!(
        alice["fieldsV1"],
        serde_json::json!({"f:data": {"f:a": {}, "f:b": {}},
                           "f:metadata": {"f:labels": {"f:app": {}}}})
    );

    // Alice stops applying b: it is removed (nobody else owns it).
    let run = apply("alice", &configmap(&[("a", "1")]), &[]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let cm = json(&k, &["get", "cm", "settings"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}));

    // Bob applies another value for a: upstream's conflict; then he forces it.
    let run = apply("bob", &configmap(&[("a", "9")]), &[]);
    assert!(!run.ok, "a conflict must fail: {}", run.stdout);
    assert!(
        run.stderr
            .contains("Apply failed with 1 conflict: conflict with \"alice\": .data.a"),
        "{}",
        run.stderr
    );
    let run = apply("bob", &configmap(&[("a", "9")]), &["--force-conflicts"]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let cm = json(&k, &["get", "cm", "settings", "--show-managed-fields"]);
    assert_eq!(cm["data"]["a"], "9");
    let alice = entry(&cm, "alice", "Apply").expect("alice still owns the label");
    assert!(alice["fieldsV1"]["f:data"].get("f:a").is_none(), "{alice}");
    assert!(entry(&cm, "bob", "Apply").is_some());

    // get -o yaml shows the managers only with --show-managed-fields.
    let yaml = k.ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(
        yaml.contains("manager: alice") && yaml.contains("manager: bob"),
        "{yaml}"
    );
    let plain = k.ok(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");

    // An update that sets managedFields to [] clears them.
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "--type=merge",
        "-p",
        r#"{"metadata":{"managedFields":[]}}"#,
    ]);
    let cm = json(&k, &["get", "cm", "settings", "--show-managed-fields"]);
    assert!(cm["metadata"].get("managedFields").is_none(), "{cm}");

    // Client-side apply: recorded as kubectl-client-side-apply; then updates by others.
    let csa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: csa\n  namespace: default\ndata:\n  x: \"1\"\n";
    k.ok_with_input(&["apply", "-f", "-"], csa);
    k.ok_with_input(&["apply", "-f", "-"], &csa.replace("\"1\"", "\"2\""));
    k.ok(&["label", "cm", "csa", "tier=web"]);
    let cm = json(&k, &["get", "cm", "csa", "--show-managed-fields"]);
    assert_eq!(cm["data"]["x"], "2");
    let csa_entry = entry(&cm, "kubectl-client-side-apply", "Update").expect("CSA entry");
    assert!(csa_entry["fieldsV1"]["f:data"].get("f:x").is_some(), "{cm}");
    assert!(csa_entry["fieldsV1"]["f:metadata"]["f:annotations"]
        .get("f:kubectl.kubernetes.io/last-applied-configuration")
        .is_some());
    let label = entry(&cm, "kubectl-label", "Update").expect("kubectl label's entry");
    assert!(label["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:tier")
        .is_some());
    // Server-side apply of the same configuration after client-side apply works.
    let run = k.run_with_input(
        &["apply", "--server-side", "-f", "-"],
        &csa.replace("\"1\"", "\"2\""),
    );
    assert!(run.ok, "{}{}", run.stdout, run.stderr);

    // A Deployment's replicas: applied by deployer, scaled by kubectl scale (an update
    // through the scale subresource), then re-applied: a conflict on .spec.replicas.
    let run = apply("deployer", &deployment(2), &[]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    k.ok(&["scale", "deployment", "web", "--replicas=4"]);
    let deploy = json(&k, &["get", "deployment", "web", "--show-managed-fields"]);
    assert_eq!(deploy["spec"]["replicas"], 4);
    let scaler = deploy["metadata"]["managedFields"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["operation"] == "Update" && e["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .unwrap_or_else(|| panic!("no update entry owns replicas: {deploy}"));
    let run = apply("deployer", &deployment(2), &[]);
    assert!(!run.ok, "re-apply must conflict: {}", run.stdout);
    let expected = format!(
        "Apply failed with 1 conflict: conflict with \"{}\"{} using apps/v1: .spec.replicas",
        scaler["manager"].as_str().unwrap_or_default(),
        scaler["subresource"]
            .as_str()
            .map(|s| format!(" with subresource \"{s}\""))
            .unwrap_or_default()
    );
    assert!(
        run.stderr.contains(&expected),
        "want {expected}\n got {}",
        run.stderr
    );
    let run = apply("deployer", &deployment(2), &["--force-conflicts"]);
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let deploy = json(&k, &["get", "deployment", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 2);
}

/// An apply conflicting with an update manager (`kubectl create`): upstream's
/// `"manager" using <apiVersion>` form.
#[test]
fn conflict_with_an_update_manager_names_its_version() {
    let Some(bin) = kubectl::find("1.32") else {
        skiff_tests::skip("kubectl 1.32 is not installed");
        return;
    };
    let dir = skiff_tests::temp_dir("ssa-update");
    let server = SkiffProcess::start(&dir.path().join("data"));
    let k = Kubectl::new(&bin, &server.kubeconfig());
    k.ok_with_input(&["create", "-f", "-"], &configmap(&[("a", "1")]));
    let run = k.run_with_input(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "tool",
            "-f",
            "-",
        ],
        &configmap(&[("a", "2")]),
    );
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using v1: .data.a"
        ),
        "{}",
        run.stderr
    );
}

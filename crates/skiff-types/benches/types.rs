//! Cost of the per-request work skiff-types does for the API server, in a plain timing loop
//! (no benchmark framework): `cargo bench -p skiff-types`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_types::defaults::apply_defaults;
use skiff_types::patch::strategic_merge;
use skiff_types::quantity::Quantity;
use skiff_types::registry::find;
use skiff_types::strategy::prepare_for_create;
use skiff_types::table::{table_at, IncludeObject};
use skiff_types::validation::{check_types, validate_create};

/// Runs `f` for at least `min` and reports the mean time per call. With `SKIFF_BENCH_ONLY`
/// set, only benchmarks whose name contains its value run (for profiling one of them).
fn measure(name: &str, min: Duration, mut f: impl FnMut()) {
    if let Ok(only) = std::env::var("SKIFF_BENCH_ONLY") {
        if !name.contains(&only) {
            return;
        }
    }
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < min {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:<48} {:>10.2} µs/op {:>12.0} ops/s",
        per * 1e6,
        1.0 / per
    );
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{i}"), "namespace": "default", "uid": "u", "labels": {"app": "web", "tier": "front"},
                     "creationTimestamp": "2025-06-01T11:00:00Z"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
            "env": [{"name": "A", "value": "1"}], "readinessProbe": {"httpGet": {"port": 80}}}]}})
}

fn main() {
    let min = Duration::from_secs(2);
    let pods = find("", "v1", "pods").expect("pods");
    let deployments = find("apps", "v1", "deployments").expect("deployments");

    let raw = pod(0);
    measure("check_types(pod)", min, || {
        black_box(check_types(pods, black_box(&raw)).is_ok());
    });
    let mut defaulted = raw.clone();
    prepare_for_create(pods, &mut defaulted);
    apply_defaults(pods, &mut defaulted);
    measure("prepare + defaults(pod)", min, || {
        let mut p = raw.clone();
        prepare_for_create(pods, &mut p);
        apply_defaults(pods, &mut p);
        black_box(p);
    });
    measure("validate_create(defaulted pod)", min, || {
        black_box(validate_create(pods, &defaulted).is_ok());
    });
    measure("prepare + defaults + validate_create(pod)", min, || {
        let mut p = raw.clone();
        prepare_for_create(pods, &mut p);
        apply_defaults(pods, &mut p);
        black_box(validate_create(pods, &p).is_ok());
    });

    let mut deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": raw["spec"].clone()}}});
    apply_defaults(deployments, &mut deploy);
    let patch = json!({"spec": {"replicas": 5, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}], "containers": [{"image": "nginx:1.28", "name": "web"}]}}}});
    measure(
        "strategic_merge(deployment, kubectl apply patch)",
        min,
        || {
            black_box(strategic_merge(deployments, &deploy, &patch).is_ok());
        },
    );

    let listed: Vec<Value> = (0..1000).map(pod).collect();
    let now = "2025-06-01T12:00:00Z".parse().expect("time");
    measure("table_at(1000 pods)", min, || {
        black_box(table_at(
            pods,
            &listed,
            json!({}),
            IncludeObject::Metadata,
            now,
        ));
    });

    measure("Quantity::parse + canonical(\"1.5Gi\")", min, || {
        black_box(
            Quantity::parse(black_box("1.5Gi"))
                .map(|q| q.canonical())
                .is_ok(),
        );
    });
}

//! Many short-lived pods at once: every exit code is observed, nothing is left behind.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_lived_pods_all_report_their_exit_codes() {
    let Some(t) = TestRuntime::new("pod churn") else {
        return;
    };
    let mut uids = Vec::new();
    for i in 0..20 {
        let mut p = pod(
            &format!("quick-{i}"),
            "Never",
            vec![container("app", &format!("exit {}", i % 3))],
        );
        p.spec.as_mut().unwrap().init_containers = Some(vec![container("init", "true")]);
        uids.push((t.run(&p).await, i % 3));
    }
    for (uid, code) in &uids {
        let s = t
            .wait(uid, 60, "the pod to end", |s| {
                matches!(phase(s), "Succeeded" | "Failed")
            })
            .await;
        assert_eq!(
            terminated(&s, "init"),
            Some((0, "Completed".into())),
            "{s:#?}"
        );
        let reason = if *code == 0 { "Completed" } else { "Error" };
        assert_eq!(
            terminated(&s, "app"),
            Some((*code, reason.into())),
            "{s:#?}"
        );
    }
    for (uid, _) in &uids {
        t.rt.remove_pod(uid).await.unwrap();
    }
    assert_eq!(skiff_runtime::testing::mounts_under(&t.root), 0);
    let left: Vec<_> = skiff_runtime::testing::cgroup_dirs(&t.cgroup_parent)
        .into_iter()
        .filter(|d| d.to_string_lossy().contains("/pod"))
        .collect();
    assert!(left.is_empty(), "pod cgroups left: {left:?}");
}

/// A thread that keeps the standard library's environment lock busy (as `Command::spawn` of
/// `nft` or any `std::env::var` does) while containers launch: a launch forked while it was
/// held must not hang in the container's init. Before the fix, most of these pods never started
/// (their launch timed out after 120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_start_while_another_thread_reads_the_environment() {
    let Some(t) = TestRuntime::new("launch beside environment reads") else {
        return;
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reads += std::env::vars().count() as u64;
            }
            reads
        })
    };
    let mut uids = Vec::new();
    for i in 0..8 {
        let mut c = container("app", "test \"$GREETING\" = hello");
        c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "GREETING".into(),
            value: Some("hello".into()),
            ..Default::default()
        }]);
        uids.push(t.run(&pod(&format!("env-{i}"), "Never", vec![c])).await);
    }
    for uid in &uids {
        let s = t
            .wait(uid, 60, "the pod to end", |s| {
                matches!(phase(s), "Succeeded" | "Failed")
            })
            .await;
        // The container saw its own environment (exit 0), not the runtime's.
        assert_eq!(
            terminated(&s, "app"),
            Some((0, "Completed".into())),
            "{s:#?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    for uid in &uids {
        t.rt.remove_pod(uid).await.unwrap();
    }
}

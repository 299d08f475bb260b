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

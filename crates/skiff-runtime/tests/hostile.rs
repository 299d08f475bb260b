//! Bad and hostile pods are refused with errors naming the field; nothing is created.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Volume, VolumeMount};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pods_are_refused_and_leave_nothing() {
    let Some(t) = TestRuntime::new("hostile pods") else {
        return;
    };
    let base = || pod("bad", "Never", vec![container("main", "true")]);
    type Mutation = Box<dyn Fn(&mut k8s_openapi::api::core::v1::Pod)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "metadata.uid",
            Box::new(|p| p.metadata.uid = Some("../../etc".into())),
        ),
        (
            "metadata.uid",
            Box::new(|p| p.metadata.uid = Some(String::new())),
        ),
        (
            "spec.containers[0].name",
            Box::new(|p| p.spec.as_mut().unwrap().containers[0].name = "../x".into()),
        ),
        (
            "spec.containers[0].name",
            Box::new(|p| p.spec.as_mut().unwrap().containers[0].name = "UPPER".into()),
        ),
        (
            "spec.shareProcessNamespace",
            Box::new(|p| p.spec.as_mut().unwrap().share_process_namespace = Some(true)),
        ),
        (
            "spec.restartPolicy",
            Box::new(|p| p.spec.as_mut().unwrap().restart_policy = Some("Sometimes".into())),
        ),
        (
            "spec.volumes[0]",
            Box::new(|p| {
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "pvc".into(),
                    persistent_volume_claim: Some(Default::default()),
                    ..Default::default()
                }])
            }),
        ),
        (
            "spec.volumes[0].name",
            Box::new(|p| {
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "../../x".into(),
                    empty_dir: Some(Default::default()),
                    ..Default::default()
                }])
            }),
        ),
        (
            "spec.volumes[0].hostPath",
            Box::new(|p| {
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "h".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/definitely/not/here".into(),
                        type_: Some("Directory".into()),
                    }),
                    ..Default::default()
                }])
            }),
        ),
        (
            "spec.dnsPolicy",
            Box::new(|p| p.spec.as_mut().unwrap().dns_policy = Some("Bogus".into())),
        ),
    ];
    for (field, mutate) in cases {
        let mut p = base();
        mutate(&mut p);
        let err =
            t.rt.run_pod(p.clone(), t.inputs(&p))
                .await
                .expect_err(field);
        assert!(
            err.to_string().contains(field),
            "error for {field} should name it: {err}"
        );
        assert!(t.rt.pods().is_empty());
    }
    // Per-container problems are reported on the container, the pod stays.
    let mut p = base();
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.volume_mounts = Some(vec![VolumeMount {
        name: "nowhere".into(),
        mount_path: "/x".into(),
        ..Default::default()
    }]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "a config error", |s| {
            state_of(s, "main")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CreateContainerConfigError")
        })
        .await;
    let msg = state_of(&s, "main")
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        msg.contains("spec.containers[0].volumeMounts[0].name"),
        "{msg}"
    );
    t.rt.remove_pod(&uid).await.unwrap();
    assert_eq!(skiff_runtime::testing::mounts_under(&t.root), 0);
    let pods: Vec<_> = std::fs::read_dir(t.root.join("pods")).unwrap().collect();
    assert!(pods.is_empty(), "no pod directories left");
}

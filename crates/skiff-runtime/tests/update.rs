//! `update_pod`: a container whose image changes is replaced (graceful stop, new instance,
//! restart count + 1) whatever the restart policy; the others keep running untouched.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_change_replaces_only_that_container() {
    let Some(t) = TestRuntime::new("update") else {
        return;
    };
    let p = pod(
        "upd",
        "Never",
        vec![
            container(
                "main",
                "trap 'exit 0' TERM; echo first; while true; do sleep 0.1; done",
            ),
            container("side", "sleep 3600"),
        ],
    );
    let uid = t.run(&p).await;
    let before = t
        .wait(&uid, 30, "both running", |s| {
            running(s, "main") && running(s, "side")
        })
        .await;
    let id_of = |s: &k8s_openapi::api::core::v1::PodStatus, name: &str| {
        s.container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.container_id.clone())
    };
    let (main_before, side_before) = (id_of(&before, "main"), id_of(&before, "side"));

    // The same layers under another image id and name: a new image for the runtime.
    let mut inputs = t.inputs(&p);
    let mut newer = t.image.clone();
    newer.id = "sha256:0000000000000000000000000000000000000000000000000000000000000001".into();
    newer.reference = "docker.io/library/busybox:v2".into();
    inputs.images.insert("main".into(), newer);
    let mut updated = p.clone();
    updated.spec.as_mut().unwrap().containers[0].image = Some("busybox:v2".into());

    let mut events = t.rt.subscribe();
    t.rt.update_pod(updated, inputs).await.expect("update_pod");
    // Until the new instance runs, `main` is never reported as finished (a Never pod could not
    // leave that state), and the pod never Succeeded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let status = t.rt.pod_status(&uid).expect("pod known");
        assert!(
            terminated(&status, "main").is_none(),
            "main reported terminated during its replacement: {status:?}"
        );
        assert_ne!(phase(&status), "Succeeded");
        if running(&status, "main") && id_of(&status, "main") != main_before {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "main was not replaced"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    };
    let main = after
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "main")
        .unwrap();
    assert_eq!(main.restart_count, 1);
    assert_eq!(main.image, "docker.io/library/busybox:v2");
    let last = main
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .expect("the replaced instance is the last state");
    assert_eq!(last.exit_code, 0, "stopped gracefully by its stop signal");
    assert_eq!(
        id_of(&after, "side"),
        side_before,
        "the other container was not touched"
    );
    let side = after
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "side")
        .unwrap();
    assert_eq!(side.restart_count, 0);
    assert_eq!(phase(&after), "Running");
}

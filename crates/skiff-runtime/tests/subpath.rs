//! subPath volume mounts in real containers: directories, files and readOnly work; a missing
//! directory is created; a symlink a previous container planted in the volume cannot lead a
//! subPath out of it; restarts re-bind without stacking mounts; nothing stays mounted after
//! the pod is removed, also when the pod was re-adopted by a new runtime. (The swap between
//! check and mount is proven deterministically in the runtime's `subpath` unit tests.)

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Volume, VolumeMount};
use skiff_runtime::{LoopbackOnly, PodInputs, Runtime};

/// Mount table lines (stacked mounts counted each) at or below `prefix`.
fn raw_mounts_under(prefix: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(prefix))
        .count()
}

fn data_volume() -> Volume {
    Volume {
        name: "data".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn sub(path: &str, sub_path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: "data".into(),
        mount_path: path.into(),
        sub_path: Some(sub_path.into()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// An init container that fills the volume and plants links out of it, as a hostile
/// container sharing the volume would.
fn seed() -> Container {
    let mut c = container(
        "seed",
        "mkdir -p /data/conf && echo hello > /data/conf/app.conf && \
         ln -s / /data/escape && ln -s ../../../../../../.. /data/up && \
         ln -s conf /data/current",
    );
    c.volume_mounts = Some(vec![VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    }]);
    c
}

fn waiting_message(s: &k8s_openapi::api::core::v1::PodStatus, name: &str) -> Option<String> {
    let w = state_of(s, name).state.as_ref()?.waiting.as_ref()?;
    (w.reason.as_deref() == Some("CreateContainerConfigError")).then(|| w.message.clone())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subpaths_bind_safely_and_leave_no_mounts() {
    let Some(t) = TestRuntime::new("subPath mounts") else {
        return;
    };
    let mut main = container(
        "main",
        "cat /etc/app.conf; ls /conf; cat /linked/app.conf; \
         (touch /conf/x 2>/dev/null && echo WRITABLE) || echo READONLY; \
         echo made > /new/f && echo DONE; sleep 3600",
    );
    main.volume_mounts = Some(vec![
        sub("/conf", "conf", true),
        sub("/etc/app.conf", "conf/app.conf", false),
        sub("/linked", "current", true),
        sub("/new", "fresh/dir", false),
    ]);
    let mut again = container("again", "cat /conf/app.conf; exit 1");
    again.volume_mounts = Some(vec![sub("/conf", "conf", true)]);
    let mut abs = container("abs", "ls /host; sleep 3600");
    abs.volume_mounts = Some(vec![sub("/host", "escape/etc", false)]);
    let mut up = container("up", "ls /host; sleep 3600");
    up.volume_mounts = Some(vec![sub("/host", "up", false)]);
    let mut p = pod("subpaths", "Always", vec![main, again, abs, up]);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![seed()]);
    spec.volumes = Some(vec![data_volume()]);

    let before = raw_mounts_under(&t.root);
    let uid = t.run(&p).await;
    let s = t
        .wait(
            &uid,
            60,
            "main running, the escapes refused, again restarted",
            |s| {
                running(s, "main")
                    && waiting_message(s, "abs").is_some()
                    && waiting_message(s, "up").is_some()
                    && state_of(s, "again").restart_count >= 2
            },
        )
        .await;
    // The planted links are refused before anything is mounted, with the field named.
    for name in ["abs", "up"] {
        let msg = waiting_message(&s, name).unwrap();
        assert!(
            msg.contains("volumeMounts[0].subPath") && msg.contains("leads out of the volume"),
            "{name}: {msg}"
        );
    }
    let pod_dir = t.rt.pod_dir(&uid);
    let volume = pod_dir.join("volumes/data");
    let logs = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let l = t.logs(&uid, "main").await;
            if l.contains("DONE") || std::time::Instant::now() > deadline {
                break l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    // Directory, file, a link inside the volume, readOnly, and a created directory.
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        vec!["hello", "app.conf", "hello", "READONLY", "DONE"],
        "{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("fresh/dir/f")).unwrap(),
        "made\n"
    );
    assert!(!volume.join("conf/x").exists());
    // One bind per subPath of the started containers; restarts replaced theirs.
    let binds = pod_dir.join("volume-subpaths");
    assert_eq!(raw_mounts_under(&binds.join("data/main")), 4);
    assert_eq!(raw_mounts_under(&binds.join("data/again")), 1);
    assert_eq!(raw_mounts_under(&binds.join("data/abs")), 0);

    t.rt.remove_pod(&uid).await.unwrap();
    assert_eq!(raw_mounts_under(&t.root), before, "mounts left behind");
    assert!(!pod_dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subpath_binds_of_an_adopted_pod_are_removed_with_it() {
    let Some(prepared) = Prepared::new("subPath binds after re-adoption") else {
        return;
    };
    let mut c = container("main", "cat /conf/app.conf; sleep 3600");
    c.volume_mounts = Some(vec![sub("/conf", "conf", true)]);
    let mut p = pod("adopted", "Always", vec![c]);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![seed()]);
    spec.volumes = Some(vec![data_volume()]);
    let uid = p.metadata.uid.clone().unwrap();

    {
        let first = Runtime::open(prepared.config(), Arc::new(LoopbackOnly)).unwrap();
        let mut inputs = PodInputs::default();
        for name in ["seed", "main"] {
            inputs.images.insert(name.into(), prepared.image.clone());
        }
        first.run_pod(p.clone(), inputs).await.unwrap();
        let mut events = first.subscribe();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !first
            .pod_status(&uid)
            .map(|s| running(&s, "main"))
            .unwrap_or(false)
        {
            assert!(tokio::time::Instant::now() < deadline, "main never ran");
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), events.recv()).await;
        }
        first.shutdown();
    }
    let binds = prepared
        .root
        .join("pods")
        .join(&uid)
        .join("volume-subpaths");
    assert_eq!(raw_mounts_under(&binds), 1, "the bind outlives the runtime");

    let t = prepared.open(|_| {});
    assert_eq!(t.rt.adopt_existing().await.unwrap(), vec![uid.clone()]);
    t.wait(&uid, 30, "adopted main running", |s| running(s, "main"))
        .await;
    t.rt.remove_pod(&uid).await.unwrap();
    assert_eq!(raw_mounts_under(&t.root), 0, "mounts left behind");
}

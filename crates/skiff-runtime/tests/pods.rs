//! Pods with real containers (root): exit codes, shared volumes and localhost, init containers,
//! OOM, environment and volumes, isolation, restarts, graceful stop, cleanup.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    ResourceRequirements, Secret, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::ByteString;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_container_reports_its_exit_code_and_output() {
    let Some(t) = TestRuntime::new("single container pod") else {
        return;
    };
    let p = pod(
        "exit-three",
        "Never",
        vec![container(
            "main",
            "echo hello from skiff; echo oops >&2; exit 3",
        )],
    );
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "the container to exit", |s| {
            terminated(s, "main").is_some()
        })
        .await;
    assert_eq!(terminated(&s, "main"), Some((3, "Error".into())), "{s:#?}");
    assert_eq!(phase(&s), "Failed");
    let cs = state_of(&s, "main");
    assert!(cs
        .container_id
        .as_deref()
        .unwrap_or("")
        .starts_with("skiff://"));
    assert_eq!(cs.image, "docker.io/library/busybox:latest");
    assert!(cs.image_id.contains("sha256:"), "{}", cs.image_id);
    assert_eq!(t.logs(&uid, "main").await, "hello from skiff\noops\n");

    let ok = pod("exit-zero", "Never", vec![container("main", "exit 0")]);
    let ok_uid = t.run(&ok).await;
    let s = t
        .wait(&ok_uid, 30, "the container to complete", |s| {
            phase(s) == "Succeeded"
        })
        .await;
    assert_eq!(terminated(&s, "main"), Some((0, "Completed".into())));

    t.rt.remove_pod(&uid).await.unwrap();
    t.rt.remove_pod(&ok_uid).await.unwrap();
    assert!(t.rt.pod_status(&uid).is_none());
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_share_an_empty_dir_and_localhost() {
    let Some(t) = TestRuntime::new("two-container pod") else {
        return;
    };
    let mut server = container("server", "exec httpd -f -p 8080 -h /www");
    server.volume_mounts = Some(vec![mount("shared", "/www")]);
    let mut writer = container(
        "writer",
        "echo 'payload from the writer' > /shared/index.html; \
         until wget -q -O /tmp/got http://localhost:8080/index.html; do sleep 0.2; done; \
         echo fetched: $(cat /tmp/got); hostname; sleep 3600",
    );
    writer.volume_mounts = Some(vec![mount("shared", "/shared")]);
    let mut p = pod("web", "Always", vec![server, writer]);
    p.spec.as_mut().unwrap().volumes = Some(vec![empty_dir("shared")]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "both containers running", |s| {
            running(s, "server") && running(s, "writer")
        })
        .await;
    assert_eq!(phase(&s), "Running");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = t.logs(&uid, "writer").await;
        if logs.contains("fetched: payload from the writer") {
            assert!(logs.contains("\nweb\n"), "hostname is the pod name: {logs}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writer never fetched the page: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both containers see the same network namespace and hostname, and not the host's.
    let out =
        t.rt.exec(
            &uid,
            "server",
            skiff_runtime::ExecOptions {
                command: vec!["cat".into(), "/proc/net/dev".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    use std::io::Read;
    out.stdout
        .as_ref()
        .unwrap()
        .try_clone()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(out.wait().await, skiff_runtime::ExitStatus::Exited(0));
    assert!(text.contains("lo:") && !text.contains("eth0"), "{text}");
    t.rt.stop_pod(&uid, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_app() {
    let Some(t) = TestRuntime::new("init containers") else {
        return;
    };
    let mut first = container("first", "echo one >> /work/order; sleep 0.3");
    first.volume_mounts = Some(vec![mount("work", "/work")]);
    let mut second = container("second", "echo two >> /work/order");
    second.volume_mounts = Some(vec![mount("work", "/work")]);
    let mut app = container("app", "echo app >> /work/order; cat /work/order");
    app.volume_mounts = Some(vec![mount("work", "/work")]);
    let mut p = pod("init-order", "Never", vec![app]);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![first, second]);
    spec.volumes = Some(vec![empty_dir("work")]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "the pod to succeed", |s| phase(s) == "Succeeded")
        .await;
    assert_eq!(terminated(&s, "first"), Some((0, "Completed".into())));
    assert_eq!(terminated(&s, "second"), Some((0, "Completed".into())));
    assert_eq!(t.logs(&uid, "app").await, "one\ntwo\napp\n");
    let initialized = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(initialized.status, "True");
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_init_container_blocks_the_app() {
    let Some(t) = TestRuntime::new("failing init container") else {
        return;
    };
    let mut p = pod(
        "init-fails",
        "Never",
        vec![container("app", "echo must not run")],
    );
    p.spec.as_mut().unwrap().init_containers = Some(vec![
        container("ok", "true"),
        container("broken", "exit 7"),
        container("later", "true"),
    ]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "the pod to fail", |s| phase(s) == "Failed")
        .await;
    assert_eq!(
        terminated(&s, "broken"),
        Some((7, "Error".into())),
        "{s:#?}"
    );
    let later = state_of(&s, "later").state.as_ref().unwrap();
    assert!(
        later.waiting.is_some(),
        "later init container never ran: {later:?}"
    );
    let app = state_of(&s, "app").state.as_ref().unwrap();
    assert_eq!(
        app.waiting.as_ref().and_then(|w| w.reason.as_deref()),
        Some("PodInitializing")
    );
    // Give it time: nothing else starts.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = t.rt.pod_status(&uid).unwrap();
    assert!(
        state_of(&s, "app").container_id.is_none(),
        "app container was never created"
    );
    assert!(t.rt.logs(&uid, "app", Default::default()).await.is_err());

    // With restartPolicy OnFailure the init container is retried with back-off.
    let mut retried = pod("init-retry", "OnFailure", vec![container("app", "true")]);
    retried.spec.as_mut().unwrap().init_containers = Some(vec![container("flaky", "exit 1")]);
    let uid2 = t.run(&retried).await;
    let s = t
        .wait(&uid2, 30, "init retries", |s| {
            state_of(s, "flaky").restart_count >= 2
        })
        .await;
    assert_eq!(phase(&s), "Pending");
    t.rt.remove_pod(&uid).await.unwrap();
    t.rt.remove_pod(&uid2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_leads_to_oom_killed() {
    let Some(t) = TestRuntime::new("OOM kill") else {
        return;
    };
    let mut hog = container("hog", "echo start; exec tail /dev/zero");
    hog.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("24Mi".into()),
        )])),
        ..Default::default()
    });
    let uid = t.run(&pod("oom", "Never", vec![hog])).await;
    let s = t
        .wait(&uid, 60, "the OOM kill", |s| terminated(s, "hog").is_some())
        .await;
    assert_eq!(
        terminated(&s, "hog"),
        Some((137, "OOMKilled".into())),
        "{s:#?}"
    );
    assert_eq!(t.logs(&uid, "hog").await, "start\n");
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_args_and_volumes_behave_as_upstream() {
    let Some(t) = TestRuntime::new("env, args, volumes") else {
        return;
    };
    let mut c = Container {
        name: "show".into(),
        image: Some("busybox".into()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(vec!["echo \"$0|$GREETING|$MODE|$POD_NAME|$(GREETING)|$LITERAL\"; cat /etc/cfg/mode.conf; echo; cat /etc/secret/token; echo; cat /etc/info/labels; ls /etc/cfg".into(), "arg0-$(MODE)".into()]),
        env: Some(vec![
            EnvVar { name: "NAME".into(), value: Some("world".into()), value_from: None },
            EnvVar { name: "GREETING".into(), value: Some("hello $(NAME)".into()), value_from: None },
            EnvVar { name: "LITERAL".into(), value: Some("$$(NAME) $(MISSING)".into()), value_from: None },
            EnvVar {
                name: "MODE".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector { name: "settings".into(), key: "mode.conf".into(), optional: None }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "POD_NAME".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
                    ..Default::default()
                }),
            },
        ]),
        volume_mounts: Some(vec![mount("cfg", "/etc/cfg"), mount("secret", "/etc/secret"), mount("info", "/etc/info")]),
        ..Default::default()
    };
    c.working_dir = Some("/tmp".into());
    let mut p = pod("envy", "Never", vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![
        Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("creds".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "info".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    let mut inputs = t.inputs(&p);
    let cm = ConfigMap {
        data: Some(BTreeMap::from([(
            "mode.conf".to_string(),
            "fast".to_string(),
        )])),
        ..Default::default()
    };
    inputs.config_maps.insert("settings".into(), cm);
    let secret = Secret {
        data: Some(BTreeMap::from([(
            "token".to_string(),
            ByteString(b"s3cr3t".to_vec()),
        )])),
        ..Default::default()
    };
    inputs.secrets.insert("creds".into(), secret);
    t.rt.run_pod(p.clone(), inputs).await.unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    let s = t
        .wait(&uid, 30, "the container to finish", |s| {
            terminated(s, "show").is_some()
        })
        .await;
    assert_eq!(
        terminated(&s, "show"),
        Some((0, "Completed".into())),
        "{}",
        t.logs(&uid, "show").await
    );
    assert_eq!(
        t.logs(&uid, "show").await,
        "arg0-fast|hello world|fast|envy|hello world|$(NAME) $(MISSING)\nfast\ns3cr3t\napp=\"envy\"\nmode.conf\n"
    );

    // A pod referencing a config map the caller did not supply is refused, naming it.
    let mut missing = pod("no-config", "Never", vec![container("c", "true")]);
    missing.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "cfg".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "absent".into(),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let err =
        t.rt.run_pod(missing.clone(), t.inputs(&missing))
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("configmap \"absent\" not found"),
        "{err}"
    );
    assert!(err.is_config_error());
    assert!(
        !t.rt
            .pod_dir(missing.metadata.uid.as_deref().unwrap())
            .exists(),
        "nothing left behind"
    );
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_isolated_from_the_host() {
    let Some(t) = TestRuntime::new("isolation") else {
        return;
    };
    let script = "\
        if mount -t tmpfs none /mnt 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi; \
        if echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; then echo procsys=writable; else echo procsys=readonly; fi; \
        if unshare -n true 2>/dev/null; then echo unshare=allowed; else echo unshare=denied; fi; \
        echo pids=$(ls -d /proc/[0-9]* | wc -l); echo pid1=$(cat /proc/1/comm); \
        cat /proc/kcore >/dev/null 2>&1 && echo kcore=readable || echo kcore=masked; \
        grep -q '^Seccomp:.*2' /proc/self/status && echo seccomp=filter || echo seccomp=off; \
        grep -q '^NoNewPrivs:.*1' /proc/self/status && echo nnp=set || echo nnp=unset; \
        grep -q '^CapEff:\\s*00000000a80425fb' /proc/self/status && echo caps=default || grep CapEff /proc/self/status";
    let uid = t
        .run(&pod("jail", "Never", vec![container("probe", script)]))
        .await;
    t.wait(&uid, 30, "the probe to finish", |s| {
        terminated(s, "probe").is_some()
    })
    .await;
    let logs = t.logs(&uid, "probe").await;
    for expect in [
        "mount=denied",
        "procsys=readonly",
        "unshare=denied",
        "pid1=sh",
        "kcore=masked",
        "seccomp=filter",
        "nnp=set",
        "caps=default",
    ] {
        assert!(logs.contains(expect), "expected {expect} in:\n{logs}");
    }
    let pids: usize = logs
        .lines()
        .find_map(|l| l.strip_prefix("pids="))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pids <= 4,
        "only the container's own processes are visible: {pids}"
    );

    // runAsNonRoot with a root image user is refused before anything runs.
    let mut c = container("root", "true");
    c.security_context = Some(SecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let uid2 = t.run(&pod("nonroot", "Never", vec![c])).await;
    let s = t
        .wait(&uid2, 30, "the config error", |s| {
            state_of(s, "root")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CreateContainerConfigError")
        })
        .await;
    let msg = state_of(&s, "root")
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(msg.contains("runAsNonRoot"), "{msg}");
    t.rt.remove_pod(&uid).await.unwrap();
    t.rt.remove_pod(&uid2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_and_keep_the_previous_logs() {
    let Some(t) = TestRuntime::new("restart back-off") else {
        return;
    };
    let uid = t
        .run(&pod(
            "crashy",
            "Always",
            vec![container("crash", "echo run at $(date +%s%N); exit 2")],
        ))
        .await;
    let s = t
        .wait(&uid, 30, "restarts and back-off", |s| {
            let cs = state_of(s, "crash");
            cs.restart_count >= 2
                && cs
                    .state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
        })
        .await;
    let cs = state_of(&s, "crash");
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 2);
    let msg = cs
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
        msg.starts_with("back-off ")
            && msg.contains("restarting failed container=crash pod=crashy_default("),
        "{msg}"
    );
    assert_eq!(
        phase(&s),
        "Running",
        "restartPolicy Always keeps the pod running"
    );
    let previous = t
        .logs_with(
            &uid,
            "crash",
            skiff_runtime::LogOptions {
                previous: true,
                ..Default::default()
            },
        )
        .await;
    assert!(previous.starts_with("run at "), "{previous}");
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_then_kill_after_the_grace_period() {
    let Some(t) = TestRuntime::new("graceful stop") else {
        return;
    };
    let polite = container(
        "polite",
        "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    );
    // PID 1 of a namespace ignores SIGTERM unless it handles it: this one must be killed.
    let mut stubborn = container("stubborn", "exec sleep 3600");
    stubborn.command = Some(vec!["sleep".into(), "3600".into()]);
    let uid = t
        .run(&pod("stopper", "Always", vec![polite, stubborn]))
        .await;
    t.wait(&uid, 30, "running", |s| {
        running(s, "polite") && running(s, "stubborn")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.logs(&uid, "polite").await.contains("ready") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    t.rt.stop_pod(&uid, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "stop took {took:?}"
    );
    let s = t.rt.pod_status(&uid).unwrap();
    assert_eq!(terminated(&s, "polite"), Some((0, "Completed".into())));
    assert_eq!(terminated(&s, "stubborn"), Some((137, "Error".into())));
    assert_eq!(phase(&s), "Failed", "a stopped pod's phase is final");
    assert!(t.logs(&uid, "polite").await.contains("got TERM"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        state_of(&t.rt.pod_status(&uid).unwrap(), "stubborn").restart_count,
        0,
        "not restarted after stop"
    );
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_leaves_no_mounts_cgroups_or_files() {
    let Some(t) = TestRuntime::new("cleanup") else {
        return;
    };
    let mut c = container("c", "sleep 3600");
    c.volume_mounts = Some(vec![mount("mem", "/mem")]);
    let mut p = pod("tidy", "Always", vec![c]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "mem".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("8Mi".into())),
        }),
        ..Default::default()
    }]);
    let before_mounts = skiff_runtime::testing::mounts_under(&t.root);
    let uid = t.run(&p).await;
    t.wait(&uid, 30, "running", |s| running(s, "c")).await;
    let pod_dir = t.rt.pod_dir(&uid);
    let during = skiff_runtime::testing::mounts_under(&pod_dir);
    assert!(during >= 6, "ns files, shm, tmpfs volume, rootfs: {during}");
    assert!(!skiff_runtime::testing::cgroup_dirs(&t.rt.pod_cgroup(&uid)).is_empty());
    let pid = t.rt.container_pid(&uid, "c").unwrap();
    t.rt.stop_pod(&uid, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    t.rt.remove_pod(&uid).await.unwrap();
    assert_eq!(skiff_runtime::testing::mounts_under(&t.root), before_mounts);
    assert!(
        skiff_runtime::testing::cgroup_dirs(&t.rt.pod_cgroup(&uid)).is_empty(),
        "pod cgroups removed"
    );
    assert!(!pod_dir.exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    );
    let leftover: Vec<_> = std::fs::read_dir(t.root.join("libcontainer"))
        .unwrap()
        .collect();
    assert!(leftover.is_empty(), "libcontainer state removed");
}

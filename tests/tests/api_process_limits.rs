//! Faults of the server's process, each provoked with a resource limit of this test process
//! (so the tests share one lock): running out of file descriptors must not end serving, and a
//! store commit that fails (the database file cannot grow) must show in `/readyz`.

use std::time::Duration;

use serde_json::json;
use skiff_tests::inproc::TestApi;

static PROCESS_LIMITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn set_limit(resource: libc::__rlimit_resource_t, soft: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(resource, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(resource, &limit), 0);
        old
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_end_serving() {
    let _guard = PROCESS_LIMITS.lock().await;
    let server = TestApi::start().await;
    let admin = server.admin();
    assert_eq!(admin.get("/version").await.status, 200);

    let old = set_limit(libc::RLIMIT_NOFILE, 512);
    let mut hogs = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        hogs.push(file);
    }
    // One descriptor for the client's socket; the server's accept then fails with EMFILE
    // and keeps failing for longer than the old loop's give-up (1000 × 20 ms, ~21 s).
    hogs.pop();
    let waiting = tokio::spawn({
        let admin = admin.clone();
        async move { admin.get("/version").await.status }
    });
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(!waiting.is_finished(), "the server could not have accepted");
    drop(hogs);
    set_limit(libc::RLIMIT_NOFILE, old);

    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client is served once descriptors are free")
        .expect("client task");
    assert_eq!(status, 200);
    assert_eq!(admin.get("/api/v1/namespaces").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_makes_readyz_fail_with_the_reason() {
    let _guard = PROCESS_LIMITS.lock().await;
    // Growing a file past RLIMIT_FSIZE sends SIGXFSZ; ignored, the write fails with EFBIG.
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let server = TestApi::start().await;
    let admin = server.admin();
    assert_eq!(admin.get("/readyz").await.text(), "ok");

    let db = server.dir.path().join("state.redb");
    let size = std::fs::metadata(&db).expect("database file").len();
    let old = set_limit(libc::RLIMIT_FSIZE, size);
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                     "data": {"a": "x".repeat(900 * 1024)}});
    let reply = admin
        .post_json("/api/v1/namespaces/default/configmaps", &big)
        .await;
    set_limit(libc::RLIMIT_FSIZE, old);
    assert_eq!(reply.status, 500, "{}", reply.text());

    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, 500, "{}", ready.text());
    let text = ready.text();
    assert!(text.starts_with("[+]ping ok\n"), "{text}");
    assert!(
        text.contains("[-]store failed: reason withheld\n"),
        "{text}"
    );
    assert!(text.ends_with("readyz check failed\n"), "{text}");
    let one = admin.get("/readyz/store").await;
    assert_eq!(one.status, 500);
    assert!(
        one.text().starts_with("internal server error: "),
        "{}",
        one.text()
    );
    let live = admin.get("/livez?verbose").await;
    assert_eq!(live.status, 500, "{}", live.text());

    // Once a later commit succeeds the store is healthy again.
    let small = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "small"}});
    let after = admin
        .post_json("/api/v1/namespaces/default/configmaps", &small)
        .await;
    if after.status == 201 {
        let ready = admin.get("/readyz?verbose").await;
        assert_eq!(ready.status, 200, "{}", ready.text());
        assert!(ready.text().contains("[+]store ok\n"), "{}", ready.text());
    } else {
        eprintln!(
            "the store did not recover after the failed commit: {}",
            after.text()
        );
    }
    server.stop().await;
}

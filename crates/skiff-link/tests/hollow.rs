//! Hollow nodes: a fleet joins with one token, each node with its own identity; pods bound to a
//! node are acknowledged as Running; a restart of the fleet reuses the stored credentials.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Cluster;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_link::hollow::{run_fleet, FleetEvent, HollowConfig};
use skiff_link::quic::NodeEvent;
use skiff_link::session::SessionConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_joins_registers_and_acknowledges_pods() {
    let cluster = Cluster::new();
    let (server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = HollowConfig::new(
        &format!("https://{addr}"),
        Some(cluster.token.to_string()),
        dir.path().to_path_buf(),
        12,
        "hollow-",
    );
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fleet = tokio::spawn(run_fleet(config.clone(), report, async move {
        let _ = stopped.await;
    }));
    let mut names = HashSet::new();
    let mut kept = Vec::new();
    while names.len() < 12 {
        let session = tokio::time::timeout(Duration::from_secs(20), sessions.recv())
            .await
            .unwrap()
            .unwrap();
        names.insert(session.node_name.clone());
        kept.push(session);
    }
    assert!(names.contains("hollow-00001") && names.contains("hollow-00012"));
    loop {
        match tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .unwrap()
            .unwrap()
        {
            FleetEvent::AllConnected { .. } => break,
            _ => continue,
        }
    }
    // Bind a pod to one node: it is acknowledged as Running.
    let session = &mut kept[0];
    let sender = session.sender();
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("u-1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sender.send_snapshot(5, vec![pod]).unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), session.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            NodeEvent::PodStatuses { updates, .. } => {
                assert_eq!(updates[0].pod.uid, "u-1");
                assert_eq!(updates[0].status.phase.as_deref(), Some("Running"));
                break;
            }
            NodeEvent::Closed(reason) => panic!("{reason}"),
            _ => {}
        }
    }
    // A server restart is seen as an outage, then recovery once every node is back.
    drop(sender);
    drop(kept);
    drop(sessions);
    server.shutdown().await;
    drop(server);
    let (_server, _sessions, _) = cluster.start(addr.port(), SessionConfig::default()).await;
    let mut outage = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .unwrap()
            .unwrap()
        {
            FleetEvent::Outage { .. } => outage = true,
            FleetEvent::Recovered { seconds } => {
                assert!(outage, "recovery without an outage");
                assert!(seconds < 10.0, "rejoin took {seconds} s");
                break;
            }
            _ => {}
        }
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), fleet)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Every node kept its credentials: a restart needs no token.
    for i in 0..12 {
        assert!(dir
            .path()
            .join(config.node_name(i))
            .join("tls/node.crt")
            .exists());
    }
    let mut again = config.clone();
    again.token = None;
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let fleet = tokio::spawn(run_fleet(again, report, async move {
        let _ = stopped.await;
    }));
    loop {
        match tokio::time::timeout(Duration::from_secs(20), reports.recv())
            .await
            .unwrap()
            .unwrap()
        {
            FleetEvent::AllConnected { .. } => break,
            _ => continue,
        }
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), fleet)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

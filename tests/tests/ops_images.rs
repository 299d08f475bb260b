//! Issue 8, air-gap acceptance: an image imported only at the server reaches an agent that has
//! no image and no registry (server-to-agent hand-over over the node link), and image archives
//! in an agent's `DIR/agent/images/` are imported when it starts.
//!
//! Real server and agent processes, each in its own network namespace; real containers and
//! kubectl; needs root.

use std::process::Command;
use std::time::Duration;

use skiff_tests::harness::{image, pod_running, Cluster, ClusterSpec};

/// `skiff image ls` of a data directory.
fn image_ls(data_dir: &std::path::Path) -> String {
    let out = Command::new(skiff_tests::process::skiff_bin())
        .args(["image", "ls", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run skiff image ls");
    assert!(
        out.status.success(),
        "skiff image ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_image(listing: &str, tag: &str) -> bool {
    listing.lines().any(|l| {
        l.starts_with("docker.io/library/busybox") && l.split_whitespace().nth(1) == Some(tag)
    })
}

fn pod(name: &str, node: &str, image: &str, policy: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: {policy}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#
    )
}

#[test]
fn server_hands_images_to_a_bare_agent_and_agents_import_archives_at_start() {
    let Some(mut cluster) = Cluster::start(
        ClusterSpec::new("handover")
            .agents(&["bare"])
            // No image anywhere, and no registry on the test network.
            .images(&[]),
    ) else {
        return;
    };
    let bare_dir = cluster.node("bare").data_dir.clone();
    assert!(
        !has_image(&image_ls(&bare_dir), "latest"),
        "the agent starts without images"
    );

    // One import at the server, into the store `skiff server` serves from.
    let archive = image::busybox("latest");
    let out = Command::new(skiff_tests::process::skiff_bin())
        .args(["image", "import", "--data-dir"])
        .arg(&cluster.server.data_dir)
        .arg(&archive)
        .output()
        .expect("run skiff image import");
    assert!(
        out.status.success(),
        "import at the server failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A pod on the bare agent gets the image from the server and runs.
    cluster.apply(&pod("handed", "bare", "busybox:latest", "IfNotPresent"));
    cluster.wait_for(
        "pod handed Running on the bare agent",
        Duration::from_secs(60),
        || pod_running(&cluster.get_json(&["pod", "handed"])),
    );
    assert!(
        has_image(&image_ls(&bare_dir), "latest"),
        "the agent's store has the handed-over image:\n{}",
        image_ls(&bare_dir)
    );
    let log = cluster.node("bare").log_text();
    assert!(
        log.contains("image fetched from the server"),
        "the agent fetched over the link:\n{}",
        cluster.node("bare").log_tail(40)
    );
    assert!(
        cluster.server.log_text().contains("image handed over"),
        "the server handed it over:\n{}",
        cluster.server.log_tail(40)
    );

    // Air-gap import at start: an archive dropped into DIR/agent/images is imported when the
    // agent starts (pull policy Never: nothing may come from anywhere else).
    let airgap = image::busybox("airgap");
    let agent = cluster.agent("bare");
    agent.stop();
    let images_dir = bare_dir.join("agent").join("images");
    std::fs::create_dir_all(&images_dir).expect("create DIR/agent/images");
    std::fs::copy(&airgap, images_dir.join("busybox-airgap.tar")).expect("copy the archive");
    agent.start().expect("restart the agent");
    cluster.wait_for(
        "the archive imported at agent start",
        Duration::from_secs(60),
        || has_image(&image_ls(&bare_dir), "airgap"),
    );
    cluster.apply(&pod("seeded", "bare", "busybox:airgap", "Never"));
    cluster.wait_for(
        "pod seeded Running from the imported archive",
        Duration::from_secs(60),
        || pod_running(&cluster.get_json(&["pod", "seeded"])),
    );
    // The handed-over pod kept running through the agent restart.
    assert!(pod_running(&cluster.get_json(&["pod", "handed"])));
}

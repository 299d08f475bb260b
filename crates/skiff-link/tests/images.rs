//! Image hand-over over a real QUIC link on loopback: the agent asks, the server offers the
//! manifest, the agent asks only for what it lacks and receives exactly those bytes; images the
//! server lacks and a server whose store is broken give clear errors.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_link::proto::image::{sha256_digest, ImageTransferError, OfferedManifest};
use skiff_link::quic::{
    AgentLink, AgentLinkConfig, ImageFuture, ImageSource, LogReader, NoLogs, NodeEvent, NodeSession,
};
use skiff_link::session::SessionConfig;

/// An in-memory image store: one image, whose layer may be stored corrupted (short).
#[derive(Debug)]
struct Images {
    manifest: String,
    blobs: HashMap<String, Vec<u8>>,
    short_layer: bool,
}

impl Images {
    fn new(short_layer: bool) -> (Self, String, String) {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layer: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let (config_digest, layer_digest) = (sha256_digest(&config), sha256_digest(&layer));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let blobs = [
            (config_digest.clone(), config),
            (layer_digest.clone(), layer),
        ]
        .into();
        (
            Self {
                manifest,
                blobs,
                short_layer,
            },
            config_digest,
            layer_digest,
        )
    }
}

impl ImageSource for Images {
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> ImageFuture<'a, Result<Option<OfferedManifest>, String>> {
        Box::pin(async move {
            Ok((reference == "busybox:1.36").then(|| OfferedManifest {
                digest: sha256_digest(self.manifest.as_bytes()),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                content: self.manifest.clone(),
                repo_digest: None,
            }))
        })
    }

    fn open_blob<'a>(
        &'a self,
        digest: &'a str,
    ) -> ImageFuture<'a, Result<(u64, LogReader), String>> {
        Box::pin(async move {
            let mut data = self
                .blobs
                .get(digest)
                .cloned()
                .ok_or_else(|| format!("no blob {digest}"))?;
            let size = data.len() as u64;
            if self.short_layer && data.len() > 1000 {
                data.truncate(1000);
            }
            Ok((size, Box::new(std::io::Cursor::new(data)) as LogReader))
        })
    }
}

fn agent_config(addr: SocketAddr, token: String, dir: &Path) -> AgentLinkConfig {
    let node = Node {
        metadata: ObjectMeta {
            name: Some("edge-img".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut config =
        AgentLinkConfig::new(&format!("https://{addr}"), Some(token), dir.into(), node);
    config.connect_timeout = Duration::from_secs(2);
    config
}

/// Answers every image request of `session` from `images`.
fn serve_images(mut session: NodeSession, images: Arc<Images>) {
    let sender = session.sender();
    tokio::spawn(async move {
        while let Some(event) = session.next_event().await {
            match event {
                NodeEvent::Register(_) => {
                    let _ = sender.registered("uid".into());
                }
                NodeEvent::FetchImage { request, reference } => {
                    let sender = sender.clone();
                    let images = images.clone();
                    tokio::spawn(async move {
                        let _ = sender
                            .send_image(request, reference, Some(images.as_ref()))
                            .await;
                    });
                }
                NodeEvent::Closed(_) => return,
                _ => {}
            }
        }
    });
}

/// A server holding one image and an agent joined to it.
struct Setup {
    link: AgentLink,
    config: String,
    layer: String,
    _dir: tempfile::TempDir,
    _server: skiff_link::quic::LinkServer,
    _events: tokio::sync::mpsc::Receiver<skiff_link::quic::AgentLinkEvent>,
}

async fn start(short_layer: bool) -> Setup {
    let cluster = Cluster::new();
    let (server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (link, events) = AgentLink::start(
        agent_config(addr, cluster.token.to_string(), dir.path()),
        None,
        Arc::new(NoLogs("test".into())),
    )
    .await
    .unwrap();
    let session = tokio::time::timeout(Duration::from_secs(10), sessions.recv())
        .await
        .unwrap()
        .unwrap();
    let (images, config, layer) = Images::new(short_layer);
    serve_images(session, Arc::new(images));
    assert!(link.wait_connected(Duration::from_secs(10)).await);
    Setup {
        link,
        config,
        layer,
        _dir: dir,
        _server: server,
        _events: events,
    }
}

#[tokio::test]
async fn agent_receives_only_the_blobs_it_lacks() {
    let setup = start(false).await;
    let (link, config, layer) = (&setup.link, &setup.config, &setup.layer);
    let download = link
        .fetch_image("busybox:1.36", Duration::from_secs(10))
        .await
        .unwrap();
    let (manifest, blobs) = download.offer().verify("busybox:1.36").unwrap();
    assert!(manifest.content.contains(layer.as_str()));
    assert_eq!(blobs.len(), 2);
    assert_eq!(&blobs[0].digest, config);
    // The agent has the config already: it asks for the layer only.
    let mut receiver = download.request(vec![blobs[1].clone()]).await.unwrap();
    let first = receiver.next_blob().await.unwrap().unwrap();
    assert_eq!(&first.digest, layer);
    let mut received = Vec::new();
    while let Some(chunk) = receiver.next_chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), 700_000);
    assert_eq!(&sha256_digest(&received), layer);
    assert!(receiver.next_blob().await.unwrap().is_none());

    // An image the server does not hold.
    let download = link
        .fetch_image("nginx:1.27", Duration::from_secs(10))
        .await
        .unwrap();
    let error = download.offer().verify("nginx:1.27").unwrap_err();
    assert!(
        matches!(
            error,
            ImageTransferError::Unavailable {
                not_found: true,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("nginx:1.27"), "{error}");
    setup.link.close(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_short_blob_at_the_server_is_an_error_not_a_hang() {
    let setup = start(true).await;
    let (link, layer) = (&setup.link, &setup.layer);
    let download = link
        .fetch_image("busybox:1.36", Duration::from_secs(10))
        .await
        .unwrap();
    let (_, blobs) = download.offer().verify("busybox:1.36").unwrap();
    let mut receiver = download.request(blobs).await.unwrap();
    let mut outcome = Ok(());
    'blobs: loop {
        match receiver.next_blob().await {
            Ok(Some(_)) => loop {
                match receiver.next_chunk().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(error) => {
                        outcome = Err(error);
                        break 'blobs;
                    }
                }
            },
            Ok(None) => break,
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let error = tokio::time::timeout(Duration::from_secs(10), async { outcome })
        .await
        .unwrap()
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(layer.as_str()) || text.contains("stream") || text.contains("ended"),
        "{text}"
    );
    setup.link.close(Duration::from_secs(3)).await;
}

//! Desired state: the pods bound to a node, streamed over its session — the full set on
//! connect (or after the resume point was compacted), then changes, resumable from a revision.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use skiff_link::proto::{PodChange, PodRef};
use skiff_link::quic::NodeSender;

use super::error::message;

/// Longest a single watch request runs before it is renewed.
const WATCH_TIMEOUT_SECONDS: u32 = 290;
/// Most watch events forwarded in one message.
const MAX_BATCH: usize = 256;
/// Bookmarks reach the node at most this often: enough to keep its resume revision inside the
/// store's history window (minutes), cheap with thousands of nodes.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// How a watch ended.
enum WatchEnd {
    /// The resume revision is gone: a new snapshot is needed.
    Expired,
    /// The watch ended normally or failed; resume from this revision.
    Resume(String),
    /// The session is over.
    SessionClosed,
}

/// Streams node `node`'s pods to `sender` until the session ends.
pub(crate) async fn stream(
    client: kube::Client,
    node: String,
    resume: Option<u64>,
    sender: NodeSender,
) {
    let pods: Api<Pod> = Api::all(client);
    let fields = format!("spec.nodeName={node}");
    let mut from = resume.map(|r| r.to_string());
    let mut failures = 0u32;
    loop {
        if sender.is_closed() {
            return;
        }
        let revision = match from.take() {
            Some(revision) => revision,
            None => match snapshot(&pods, &fields, &sender).await {
                Ok(revision) => {
                    failures = 0;
                    revision
                }
                Err(error) => {
                    tracing::warn!(%node, %error, "cannot list the node's pods");
                    failures += 1;
                    tokio::time::sleep(retry_delay(failures)).await;
                    continue;
                }
            },
        };
        match watch(&pods, &fields, &node, &revision, &sender).await {
            WatchEnd::Expired => {
                tracing::debug!(%node, %revision, "resume revision expired; sending a snapshot");
            }
            WatchEnd::Resume(last) => {
                if last == revision {
                    failures += 1;
                    tokio::time::sleep(retry_delay(failures)).await;
                } else {
                    failures = 0;
                }
                from = Some(last);
            }
            WatchEnd::SessionClosed => return,
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)))
}

async fn snapshot(pods: &Api<Pod>, fields: &str, sender: &NodeSender) -> Result<String, String> {
    let list = pods
        .list(&ListParams::default().fields(fields))
        .await
        .map_err(|e| message(&e))?;
    let revision = list.metadata.resource_version.clone().unwrap_or_default();
    let number = revision
        .parse::<u64>()
        .map_err(|_| format!("list returned resourceVersion {revision:?}"))?;
    sender
        .send_snapshot(number, list.items)
        .map_err(|e| e.to_string())?;
    Ok(revision)
}

async fn watch(
    pods: &Api<Pod>,
    fields: &str,
    node: &str,
    revision: &str,
    sender: &NodeSender,
) -> WatchEnd {
    let params = WatchParams::default()
        .fields(fields)
        .timeout(WATCH_TIMEOUT_SECONDS);
    let stream = match pods.watch(&params, revision).await {
        Ok(stream) => stream,
        Err(kube::Error::Api(status)) if status.code == 410 => return WatchEnd::Expired,
        Err(error) => {
            tracing::debug!(%node, %error, "cannot start the pod watch");
            return WatchEnd::Resume(revision.to_string());
        }
    };
    let mut stream = stream.boxed();
    let mut last = revision.to_string();
    let mut bookmarked = std::time::Instant::now();
    loop {
        let first = tokio::select! {
            event = stream.next() => event,
            _ = sender.closed() => return WatchEnd::SessionClosed,
        };
        let Some(first) = first else {
            return WatchEnd::Resume(last);
        };
        // Gather what is already waiting into one message.
        let mut events = vec![first];
        while events.len() < MAX_BATCH {
            match stream.next().now_or_never() {
                Some(Some(event)) => events.push(event),
                _ => break,
            }
        }
        let mut changes = Vec::new();
        let mut bookmark = None;
        for event in events {
            match event {
                Ok(WatchEvent::Added(pod)) | Ok(WatchEvent::Modified(pod)) => {
                    if let Some(rv) = pod.metadata.resource_version.clone() {
                        last = rv;
                    }
                    let bound =
                        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
                    changes.push(if bound {
                        PodChange::Upsert { pod: Box::new(pod) }
                    } else {
                        PodChange::Removed { pod: pod_ref(&pod) }
                    });
                }
                Ok(WatchEvent::Deleted(pod)) => {
                    if let Some(rv) = pod.metadata.resource_version.clone() {
                        last = rv;
                    }
                    changes.push(PodChange::Removed { pod: pod_ref(&pod) });
                }
                Ok(WatchEvent::Bookmark(mark)) => {
                    last = mark.metadata.resource_version.clone();
                    bookmark = Some(last.clone());
                }
                Ok(WatchEvent::Error(status)) if status.code == 410 => {
                    flush(sender, &last, changes);
                    return WatchEnd::Expired;
                }
                Ok(WatchEvent::Error(status)) => {
                    tracing::debug!(%node, message = %status.message, "pod watch error");
                    flush(sender, &last, changes);
                    return WatchEnd::Resume(last);
                }
                Err(error) => {
                    tracing::debug!(%node, %error, "pod watch failed");
                    flush(sender, &last, changes);
                    return WatchEnd::Resume(last);
                }
            }
        }
        if !changes.is_empty() {
            if !flush(sender, &last, changes) {
                return WatchEnd::SessionClosed;
            }
            bookmarked = std::time::Instant::now();
        } else if let Some(mark) = bookmark {
            if bookmarked.elapsed() >= BOOKMARK_EVERY {
                if let Ok(number) = mark.parse::<u64>() {
                    if sender.send_bookmark(number).is_err() {
                        return WatchEnd::SessionClosed;
                    }
                    bookmarked = std::time::Instant::now();
                }
            }
        }
    }
}

/// Sends changes up to revision `last`; false if the session is gone.
fn flush(sender: &NodeSender, last: &str, changes: Vec<PodChange>) -> bool {
    if changes.is_empty() {
        return true;
    }
    let Ok(revision) = last.parse::<u64>() else {
        return true;
    };
    sender.send_changes(revision, changes).is_ok()
}

fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

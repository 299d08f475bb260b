//! Node IPAM (upstream's range allocator): gives every node without one a pod CIDR from
//! `--cluster-cidr` (`spec.podCIDR` and `spec.podCIDRs`), using the pure allocator of
//! `skiff_types::podcidr`. The allocator is restored from the nodes' existing CIDRs before
//! the first allocation, so assignments survive restarts; a deleted node's CIDR is released.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::podcidr::{Ipv4Cidr, PodCidrAllocator};

use crate::error::{is_not_found, ApiContext};
use crate::events::{EventType, Recorder};
use crate::informer::{Change, Informer};
use crate::util::meta::name_of;
use crate::Error;

/// Component name in events.
pub const COMPONENT: &str = "node-ipam-controller";

/// The pod CIDR allocator shared by the reconciles.
pub struct Allocator {
    inner: Mutex<AllocatorState>,
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator").finish_non_exhaustive()
    }
}

struct AllocatorState {
    cidrs: PodCidrAllocator,
    restored: bool,
}

impl Allocator {
    /// An allocator splitting `cluster_cidr` into `/node_prefix_len` subnets.
    pub fn new(cluster_cidr: &str, node_prefix_len: u8) -> Result<Allocator, Error> {
        let cluster = Ipv4Cidr::from_str(cluster_cidr).map_err(|e| Error::Config {
            setting: "cluster-cidr",
            message: e.to_string(),
        })?;
        let cidrs = PodCidrAllocator::new(cluster, node_prefix_len).map_err(|e| Error::Config {
            setting: "node-cidr-mask-size",
            message: e.to_string(),
        })?;
        Ok(Allocator {
            inner: Mutex::new(AllocatorState {
                cidrs,
                restored: false,
            }),
        })
    }
}

struct Ctx {
    client: Client,
    nodes: Informer<Node>,
    allocator: Allocator,
    recorder: Recorder,
    released: Mutex<HashSet<String>>,
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()?
        .pod_cidr
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// Starts the controller.
pub fn start(
    client: Client,
    nodes: &Informer<Node>,
    allocator: Allocator,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        nodes: nodes.clone(),
        allocator,
        recorder: Recorder::new(client, COMPONENT),
        released: Mutex::new(HashSet::new()),
    });
    let store = nodes.store();
    let deleted_ctx = ctx.clone();
    let triggers = nodes
        .triggers(store.clone(), move |change| match change {
            Change::Applied(node) if pod_cidr(node).is_none() => {
                vec![ObjectRef::from_obj(node.as_ref())]
            }
            Change::Deleted(node) => {
                let mut state = deleted_ctx
                    .allocator
                    .inner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if state.restored {
                    if let Some(cidr) = state.cidrs.release(name_of(&node.metadata)) {
                        tracing::info!(node = %name_of(&node.metadata), %cidr, "released pod CIDR");
                    }
                } else {
                    deleted_ctx
                        .released
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name_of(&node.metadata).to_string());
                }
                Vec::new()
            }
            _ => Vec::new(),
        })
        .boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT, store, triggers, reconcile, ctx, 1,
    ));
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pod_cidr(&node).is_some() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = name_of(&node.metadata).to_string();
    ctx.nodes.ready().await;
    let cidr = {
        let mut state = ctx
            .allocator
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !state.restored {
            // The first allocation takes what the (complete) node list already holds.
            for n in ctx.nodes.store().state() {
                let Some(existing) = pod_cidr(&n) else {
                    continue;
                };
                let owner = name_of(&n.metadata);
                match Ipv4Cidr::from_str(existing) {
                    Ok(c) => {
                        if let Err(e) = state.cidrs.restore(owner, c) {
                            tracing::warn!(node = owner, error = %e, "cannot restore pod CIDR");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = owner, error = %e, "node has an unparsable pod CIDR")
                    }
                }
            }
            for gone in ctx
                .released
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
            {
                state.cidrs.release(&gone);
            }
            state.restored = true;
        }
        match state.cidrs.allocate(&name) {
            Ok(c) => c,
            Err(e) => {
                ctx.recorder.event(
                    node.as_ref(),
                    EventType::Normal,
                    "CIDRNotAvailable",
                    format!("Node {name} status is now: CIDRNotAvailable ({e})"),
                );
                return Err(Error::Config {
                    setting: "cluster-cidr",
                    message: e.to_string(),
                });
            }
        }
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "assigned pod CIDR");
            Ok(Action::await_change())
        }
        Err(e) => {
            let mut state = ctx
                .allocator
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            state.cidrs.release(&name);
            if is_not_found(&e) {
                return Ok(Action::await_change());
            }
            ctx.recorder.event(
                node.as_ref(),
                EventType::Warning,
                "CIDRAssignmentFailed",
                format!("Node {name} status is now: CIDRAssignmentFailed"),
            );
            Err(e).context(|| format!("assign pod CIDR {cidr} to node {name}"))
        }
    }
}

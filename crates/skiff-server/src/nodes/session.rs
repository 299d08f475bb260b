//! One node's session on the server: registration, heartbeats (Lease), desired state, statuses,
//! deletion confirmations, events and certificate renewal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde_json::json;
use skiff_link::proto::{JoinRequest, PodRef, PodStatusUpdate, RefusalCode, StatusFailure};
use skiff_link::quic::{JoinGrant, NodeEvent, NodeService, NodeSession, Refusal};

use super::error::{message, status_code};
use super::lease::Heart;
use super::{
    certificates, desired, join, objects, peers, policies, registration, services, work_limits,
    Shared,
};

/// The control plane's [`NodeService`].
pub(crate) struct Sessions {
    shared: Arc<Shared>,
}

impl Sessions {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl NodeService for Sessions {
    async fn join(&self, request: JoinRequest, remote: SocketAddr) -> Result<JoinGrant, Refusal> {
        join::join(&self.shared, request, remote).await
    }

    async fn serve(&self, session: NodeSession) {
        serve(self.shared.clone(), session).await;
    }
}

async fn serve(shared: Arc<Shared>, mut session: NodeSession) {
    let name = session.node_name.clone();
    tracing::info!(node = %name, remote = %session.remote, agent = %session.agent_version, resume = ?session.resume_revision, "node session open");
    // Connected until this function returns (the session ended).
    let _connected = skiff_metrics::global()
        .link
        .session_opened(session.resume_revision.is_some());
    let as_node = kube::Client::new(
        shared.api.service(skiff_pki::node_identity(&name)),
        "default",
    );
    let sender = session.sender();
    let desired = tokio::spawn(desired::stream(
        as_node.clone(),
        name.clone(),
        session.resume_revision,
        sender.clone(),
    ));
    let mut directory_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut services_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut policies_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut heart = Heart::new(&name, &as_node, &shared.admin);
    let mut registration: Option<Node> = None;
    if !shared.certificates.is_current(&name) {
        let _ = sender.refuse(
            RefusalCode::Forbidden,
            &certificates::revoked_message(&name),
        );
        desired.abort();
        return;
    }
    let mut last_status = Instant::now();
    let work = work_limits::NodeWork::new(shared.settings.work_limits);
    while let Some(event) = session.next_event().await {
        match event {
            NodeEvent::Register(node) => {
                match registration::register(&shared, &as_node, &name, &node).await {
                    Ok(uid) => {
                        heart.set_node_uid(uid.clone());
                        last_status = Instant::now();
                        registration = Some(*node);
                        if let Err(error) = heart.beat().await {
                            tracing::warn!(node = %name, %error, "lease");
                        }
                        let _ = sender.registered(uid);
                    }
                    Err(error) => {
                        tracing::warn!(node = %name, %error, "registration failed");
                        let _ = sender.refuse(RefusalCode::BadRequest, &error);
                    }
                }
            }
            NodeEvent::Heartbeat => {
                // Revoked while connected (Node deleted, token revoked): the session ends.
                let deleted =
                    registration.is_some() && registration::stored_ready(&shared, &name).is_none();
                if deleted {
                    shared.certificates.revoke_node(&name);
                }
                if deleted || !shared.certificates.is_current(&name) {
                    tracing::info!(node = %name, "ending the session of a revoked node");
                    let _ = sender.refuse(
                        RefusalCode::Forbidden,
                        &certificates::revoked_message(&name),
                    );
                    break;
                }
                if let Err(error) = heart.beat().await {
                    tracing::warn!(node = %name, %error, "lease");
                }
                if let Some(node) = &registration {
                    refresh(&shared, &as_node, &name, node, &mut last_status).await;
                }
            }
            NodeEvent::PodStatuses { batch, updates } => {
                let failures = write_statuses(&as_node, updates).await;
                let _ = sender.ack_statuses(batch, failures);
            }
            NodeEvent::PodsTerminated(pods) => finish_deletions(&as_node, &name, pods).await,
            NodeEvent::Events(events) => record_events(&as_node, &name, events).await,
            NodeEvent::RenewCertificate { csr_pem } => {
                // Only for a node whose certificates still stand, tied to the same token.
                let token = shared.certificates.token_of(&name);
                let (true, Some(token)) = (shared.certificates.is_current(&name), token) else {
                    let _ = sender.refuse(
                        RefusalCode::Forbidden,
                        &certificates::revoked_message(&name),
                    );
                    break;
                };
                match certificates::issue(&shared, &name, &csr_pem, &token).await {
                    Ok(certificate) => {
                        tracing::info!(node = %name, "renewed the node certificate");
                        let _ = sender.certificate_renewed(certificate);
                    }
                    Err(refusal) => {
                        let _ = sender.refuse(refusal.code, &refusal.message);
                    }
                }
            }
            NodeEvent::WatchNodes => {
                if directory_task.is_none() {
                    let admin = shared.admin.clone();
                    let directory = shared
                        .directory
                        .get_or_init(|| async move { peers::start(admin) })
                        .await
                        .clone();
                    directory_task = Some(tokio::spawn(peers::serve(
                        directory,
                        shared.settings.cluster_network.clone(),
                        sender.clone(),
                    )));
                }
            }
            NodeEvent::WatchServices => {
                if services_task.is_none() {
                    let admin = shared.admin.clone();
                    let directory = shared
                        .services
                        .get_or_init(|| async move { services::start(admin) })
                        .await
                        .clone();
                    services_task = Some(tokio::spawn(services::serve(directory, sender.clone())));
                }
            }
            NodeEvent::WatchPolicies => {
                if policies_task.is_none() {
                    let admin = shared.admin.clone();
                    let directory = shared
                        .policies
                        .get_or_init(|| async move { policies::start(admin) })
                        .await
                        .clone();
                    policies_task = Some(tokio::spawn(policies::serve(
                        directory,
                        name.clone(),
                        sender.clone(),
                    )));
                }
            }
            NodeEvent::GetObjects { request, refs } => {
                let permit = match work.objects(&refs) {
                    Ok(permit) => permit,
                    Err(refused) => {
                        tracing::warn!(node = %name, objects = refs.len(), "getObjects over the node's limits refused");
                        let _ = sender.send_objects(request, refused);
                        continue;
                    }
                };
                let as_node = as_node.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let results = objects::read(&as_node, refs).await;
                    let _ = sender.send_objects(request, results);
                    drop(permit);
                });
            }
            NodeEvent::FetchImage { request, reference } => {
                // Always answered (the node waits): with the image, or with why not.
                let (permit, images) = match work.image() {
                    Ok(permit) => (Some(permit), shared.settings.images.clone()),
                    Err(message) => {
                        tracing::warn!(node = %name, image = %reference, "image fetch over the node's limit refused");
                        let refused: Arc<dyn skiff_link::quic::ImageSource> =
                            Arc::new(work_limits::Refused(message));
                        (None, Some(refused))
                    }
                };
                let sender = sender.clone();
                let node = name.clone();
                tokio::spawn(async move {
                    let result = sender
                        .send_image(request, reference.clone(), images.as_deref())
                        .await;
                    drop(permit);
                    if let Err(error) = result {
                        tracing::warn!(%node, image = %reference, %error, "image hand-over failed");
                    }
                });
            }
            NodeEvent::ResourceUsage(report) => shared.usage.record(&name, report),
            NodeEvent::Closed(reason) => {
                tracing::info!(node = %name, %reason, "node session closed");
                shared.usage.forget(&name);
                break;
            }
        }
    }
    desired.abort();
    if let Some(task) = services_task {
        task.abort();
    }
    if let Some(task) = policies_task {
        task.abort();
    }
    if let Some(task) = directory_task {
        task.abort();
    }
}

/// Keeps the Node's conditions fresh: at the status interval, and at once if the stored Node
/// says it is not Ready (a controller marked it while the link was down).
async fn refresh(
    shared: &Shared,
    as_node: &kube::Client,
    name: &str,
    node: &Node,
    last_status: &mut Instant,
) {
    let stored = registration::stored_ready(shared, name);
    let due = last_status.elapsed() >= shared.settings.node_status_interval;
    let result = match stored {
        // Deleted: the heartbeat ends the session (deletion revokes the node's certificates).
        None => return,
        Some(false) => registration::refresh_status(as_node, name, node).await,
        Some(true) if due => registration::refresh_status(as_node, name, node).await,
        Some(true) => return,
    };
    match result {
        Ok(()) => *last_status = Instant::now(),
        Err(error) => tracing::warn!(node = %name, %error, "node status"),
    }
}

/// Writes each pod's status through `pods/status` (a merge patch that also pins the uid);
/// returns the ones that failed.
async fn write_statuses(
    as_node: &kube::Client,
    updates: Vec<PodStatusUpdate>,
) -> Vec<StatusFailure> {
    let mut failures = Vec::new();
    for update in updates {
        let pods: Api<Pod> = Api::namespaced(as_node.clone(), &update.pod.namespace);
        let patch = json!({
            "metadata": {"uid": update.pod.uid},
            "status": update.status,
        });
        if let Err(error) = pods
            .patch_status(
                &update.pod.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            failures.push(StatusFailure {
                pod: update.pod,
                message: message(&error),
            });
        }
    }
    failures
}

/// Deletes pods the node has stopped (grace period 0, only the same uid).
async fn finish_deletions(as_node: &kube::Client, node: &str, pods: Vec<PodRef>) {
    for pod in pods {
        let api: Api<Pod> = Api::namespaced(as_node.clone(), &pod.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod.name, &params).await {
            Ok(_) => {}
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => {}
            Err(error) => {
                tracing::warn!(%node, pod = %pod, error = %message(&error), "cannot finish the deletion of a pod")
            }
        }
    }
}

/// Creates the node's events in their namespaces.
async fn record_events(as_node: &kube::Client, node: &str, events: Vec<Event>) {
    for mut event in events {
        let namespace = event
            .metadata
            .namespace
            .clone()
            .or_else(|| event.involved_object.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        event.metadata.namespace = Some(namespace.clone());
        if event.metadata.name.is_none() && event.metadata.generate_name.is_none() {
            event.metadata.generate_name = Some(format!(
                "{}.",
                event.involved_object.name.as_deref().unwrap_or(node)
            ));
        }
        if event.source.is_none() {
            event.source = Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("kubelet".into()),
                host: Some(node.to_string()),
            });
        }
        let api: Api<Event> = Api::namespaced(as_node.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%node, error = %message(&error), "cannot record an event");
        }
    }
}

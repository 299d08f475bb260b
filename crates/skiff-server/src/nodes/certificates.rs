//! Node certificates: issued short-lived at join and renewal, recorded per node (serial, expiry,
//! join token) on the node's password Secret so the record survives restarts, and revoked when
//! the Node is deleted or the join token the node joined with is revoked.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use skiff_link::proto::RefusalCode;
use skiff_link::quic::Refusal;
use skiff_pki::{
    NodeCertRecord, NodeCertificates, NODE_PASSWORD_SECRET_SUFFIX, TOKEN_NAMESPACE,
    TOKEN_SECRET_PREFIX,
};

use super::error::{message, status_code};
use super::join::NODE_PASSWORD_SECRET_TYPE;
use super::Shared;

/// Annotation of the node password Secret holding the node's certificate records (JSON).
pub(super) const CERTIFICATES_ANNOTATION: &str = "skiff.dev/node-certificates";

/// Why a node is refused once its certificate is revoked.
pub(crate) fn revoked_message(node: &str) -> String {
    format!(
        "the certificate of node {node} was revoked (its Node was deleted or its join token \
         revoked); join again with a valid token"
    )
}

fn password_secret(node: &str) -> String {
    format!("{node}{NODE_PASSWORD_SECRET_SUFFIX}")
}

/// Signs `csr_pem` for `node` (joined with `token_id`) and records the certificate, in memory
/// and on the node's password Secret. The record is written before the certificate is handed
/// out, so a restart never forgets a certificate that is in use.
pub(crate) async fn issue(
    shared: &Shared,
    node: &str,
    csr_pem: &str,
    token_id: &str,
) -> Result<String, Refusal> {
    let issued = shared
        .ca
        .sign_node_csr(
            csr_pem,
            &skiff_pki::node_identity(node),
            shared.settings.node_cert_validity,
        )
        .map_err(|e| Refusal::new(RefusalCode::BadRequest, e.to_string()))?;
    let records = shared.certificates.record(
        node,
        NodeCertRecord {
            serial: issued.serial.clone(),
            not_after: issued.not_after,
            token_id: token_id.to_string(),
        },
    );
    if let Err(error) = persist(&shared.admin, node, &records).await {
        shared.certificates.set(
            node,
            records
                .into_iter()
                .filter(|r| r.serial != issued.serial)
                .collect(),
        );
        return Err(Refusal::new(
            RefusalCode::Internal,
            format!("cannot record the certificate of node {node}: {error}"),
        ));
    }
    Ok(issued.pem)
}

async fn persist(
    admin: &kube::Client,
    node: &str,
    records: &[NodeCertRecord],
) -> Result<(), String> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), TOKEN_NAMESPACE);
    let text = serde_json::to_string(records).map_err(|e| e.to_string())?;
    secrets
        .patch(
            &password_secret(node),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {CERTIFICATES_ANNOTATION: text}}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| message(&e))
}

/// Loads the records of every node from the node password Secrets.
pub(crate) async fn load(
    admin: &kube::Client,
    certificates: &NodeCertificates,
) -> Result<usize, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), TOKEN_NAMESPACE);
    let items = secrets.list(&ListParams::default()).await?.items;
    let mut loaded = 0;
    for secret in items {
        if secret.type_.as_deref() != Some(NODE_PASSWORD_SECRET_TYPE) {
            continue;
        }
        let Some(node) = secret
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_suffix(NODE_PASSWORD_SECRET_SUFFIX))
        else {
            continue;
        };
        let annotations: BTreeMap<String, String> =
            secret.metadata.annotations.clone().unwrap_or_default();
        let Some(text) = annotations.get(CERTIFICATES_ANNOTATION) else {
            continue;
        };
        match serde_json::from_str::<Vec<NodeCertRecord>>(text) {
            Ok(records) => {
                certificates.set(node, records);
                loaded += 1;
            }
            Err(error) => {
                tracing::warn!(%node, %error, "unreadable node certificate records; the node must join again")
            }
        }
    }
    Ok(loaded)
}

/// Revokes `node`'s certificates: in memory at once, then on its Secret (deleted with the
/// Node, as k3s does; emptied when only its token was revoked, so the name stays protected).
async fn revoke(admin: &kube::Client, certificates: &NodeCertificates, node: &str, delete: bool) {
    if certificates.revoke_node(node) {
        tracing::info!(%node, "revoked the node's certificates");
    }
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), TOKEN_NAMESPACE);
    let result = if delete {
        secrets
            .delete(&password_secret(node), &DeleteParams::default())
            .await
            .map(|_| ())
    } else {
        secrets
            .patch(
                &password_secret(node),
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {CERTIFICATES_ANNOTATION: "[]"}}}),
                ),
            )
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => {}
        Err(error) if status_code(&error) == Some(404) => {}
        Err(error) => {
            tracing::warn!(%node, error = %message(&error), "cannot record the revocation")
        }
    }
}

/// Watches Node deletions and join token revocations for as long as the link runs.
pub(crate) fn watch_revocations(admin: kube::Client, certificates: NodeCertificates) {
    let nodes_admin = admin.clone();
    let nodes_certificates = certificates.clone();
    tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(nodes_admin.clone());
        let mut stream = watcher(nodes, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Delete(node)) => {
                    if let Some(name) = node.metadata.name.as_deref() {
                        revoke(&nodes_admin, &nodes_certificates, name, true).await;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "node watch for revocations interrupted; it resumes");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), TOKEN_NAMESPACE);
        let mut stream = watcher(secrets, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Delete(secret)) => {
                    let Some(id) = secret
                        .metadata
                        .name
                        .as_deref()
                        .and_then(|n| n.strip_prefix(TOKEN_SECRET_PREFIX))
                    else {
                        continue;
                    };
                    for node in certificates.nodes_joined_with(id) {
                        tracing::info!(%node, token = %id, "join token revoked");
                        revoke(&admin, &certificates, &node, false).await;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "token watch for revocations interrupted; it resumes");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    });
}

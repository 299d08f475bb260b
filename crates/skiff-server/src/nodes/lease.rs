//! The node's Lease in `kube-node-lease`, renewed on every heartbeat with one update.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::PostParams;
use kube::Api;

use super::error::{message, status_code};

/// Namespace of node leases.
pub(super) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration, as upstream's kubelet (40 s: four 10 s heartbeats).
pub(super) const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews one node's Lease, keeping the last written version to update without a read.
pub(crate) struct Heart {
    name: String,
    as_node: Api<Lease>,
    as_admin: Api<Lease>,
    cached: Option<Lease>,
    node_uid: Option<String>,
}

impl Heart {
    pub(super) fn new(name: &str, as_node: &kube::Client, admin: &kube::Client) -> Self {
        Self {
            name: name.to_string(),
            as_node: Api::namespaced(as_node.clone(), LEASE_NAMESPACE),
            as_admin: Api::namespaced(admin.clone(), LEASE_NAMESPACE),
            cached: None,
            node_uid: None,
        }
    }

    /// The Node's uid, for the Lease's owner reference (set after registration).
    pub(super) fn set_node_uid(&mut self, uid: String) {
        if !uid.is_empty() {
            self.node_uid = Some(uid);
        }
    }

    /// Renews the Lease (creating it if missing).
    pub(super) async fn beat(&mut self) -> Result<(), String> {
        for _attempt in 0..3 {
            let lease = match self.cached.take() {
                Some(lease) => lease,
                None => match self.as_node.get_opt(&self.name).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => return self.create().await,
                    Err(e) => {
                        return Err(format!("cannot read lease {}: {}", self.name, message(&e)))
                    }
                },
            };
            let mut renewed = lease;
            let spec = renewed.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(self.name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            match self
                .as_node
                .replace(&self.name, &PostParams::default(), &renewed)
                .await
            {
                Ok(written) => {
                    self.cached = Some(written);
                    return Ok(());
                }
                // Someone else wrote it (or it was deleted): read again.
                Err(error) if matches!(status_code(&error), Some(409 | 404)) => continue,
                Err(error) => {
                    return Err(format!(
                        "cannot renew lease {}: {}",
                        self.name,
                        message(&error)
                    ))
                }
            }
        }
        Err(format!(
            "cannot renew lease {}: kept conflicting",
            self.name
        ))
    }

    async fn create(&mut self) -> Result<(), String> {
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(LEASE_NAMESPACE.to_string()),
                owner_references: self.node_uid.as_ref().map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: self.name.clone(),
                        uid: uid.clone(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        // Created with the server's identity: the authorizer cannot check a name on create.
        match self.as_admin.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                self.cached = Some(created);
                Ok(())
            }
            Err(error) if status_code(&error) == Some(409) => Ok(()),
            Err(error) => Err(format!(
                "cannot create lease {}: {}",
                self.name,
                message(&error)
            )),
        }
    }
}

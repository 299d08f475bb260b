//! The Services the cluster has from the start and keeps: the `kubernetes` Service's endpoints
//! (upstream's master endpoint reconciler: the Endpoints and EndpointSlice `default/kubernetes`
//! point at this server's advertised address and HTTPS port) and the `kube-dns` Service at the
//! tenth address of the service CIDR. Both are written on start and looked at again every
//! [`RECONCILE_PERIOD`] (upstream's reconcile interval), so a deleted or edited one comes
//! back.

use std::net::IpAddr;
use std::time::Duration;

use skiff_apiserver::{ApiError, ApiServer};

/// How often the system Services are checked (upstream `--endpoint-reconciler` 10 s).
pub(crate) const RECONCILE_PERIOD: Duration = Duration::from_secs(10);

/// Writes what is missing or different.
pub(crate) async fn ensure(
    api: &ApiServer,
    address: Option<IpAddr>,
    port: u16,
) -> Result<(), ApiError> {
    api.ensure_kubernetes_endpoints(address, port).await?;
    api.ensure_kube_dns_service().await
}

/// Keeps them, every [`RECONCILE_PERIOD`].
pub(crate) fn spawn(
    api: ApiServer,
    address: Option<IpAddr>,
    port: u16,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONCILE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; start already wrote them
        loop {
            tick.tick().await;
            if let Err(error) = ensure(&api, address, port).await {
                tracing::warn!(%error, "cannot write the system Services");
            }
        }
    })
}

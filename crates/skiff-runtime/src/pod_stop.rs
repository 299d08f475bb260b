//! Stopping and removing a pod (through its worker).

use std::time::Duration;

use tokio::sync::oneshot;

use crate::context::PodMsg;
use crate::error::{Result, RuntimeError};
use crate::runtime::Runtime;

impl Runtime {
    /// Stops every container of the pod: the stop signal (image StopSignal or SIGTERM), then
    /// SIGKILL after `grace` (default: the pod's terminationGracePeriodSeconds, else the
    /// configured default). Returns when all containers have ended. The pod's phase is final.
    pub async fn stop_pod(&self, uid: &str, grace: Option<Duration>) -> Result<()> {
        let (tx, pod_grace) = self.entry(uid, |e| {
            let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
            let g = r
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .map(crate::durations::spec_seconds);
            (e.tx.clone(), g)
        })?;
        let grace = grace
            .or(pod_grace)
            .unwrap_or(self.inner().config.default_grace);
        let (done, wait) = oneshot::channel();
        tx.send(PodMsg::Stop { grace, done })
            .map_err(|_| RuntimeError::ShutDown)?;
        wait.await.map_err(|_| RuntimeError::ShutDown)
    }

    /// Removes the pod: kills what still runs, then deletes containers, network, volumes,
    /// namespaces, cgroups and files (logs included). Stop it gracefully first with
    /// [`Runtime::stop_pod`].
    pub async fn remove_pod(&self, uid: &str) -> Result<()> {
        let tx = self.entry(uid, |e| e.tx.clone())?;
        let (done, wait) = oneshot::channel();
        tx.send(PodMsg::Remove { done })
            .map_err(|_| RuntimeError::ShutDown)?;
        wait.await.map_err(|_| RuntimeError::ShutDown)?
    }
}

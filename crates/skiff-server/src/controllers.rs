//! Starts the scheduler and the controllers on in-process clients of the API server, each
//! under its own identity, so they use exactly the API (validation, authorization) kubectl
//! uses.

use std::time::Duration;

use kube::Client;
use skiff_apiserver::{ApiServer, Identity};
use skiff_controllers::{Clients, ControllerConfig, Running};

use crate::ServerError;

pub use skiff_controllers::util::duration::parse_duration;

/// User the scheduler acts as.
pub(crate) const SCHEDULER_USER: &str = "system:kube-scheduler";
/// User the controllers act as.
pub(crate) const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// Group of the control loops' identities. skiff has no RBAC: like the admin, the in-process
/// control loops may do everything.
const CONTROL_PLANE_GROUP: &str = skiff_pki::ADMIN_GROUP;

/// Timings and limits of the control loops (`skiff server` flags named as
/// kube-controller-manager's).
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// `--node-monitor-period`.
    pub node_monitor_period: Duration,
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`.
    pub node_startup_grace_period: Duration,
    /// `--terminated-pod-gc-threshold` (0 disables).
    pub terminated_pod_gc_threshold: usize,
    /// `--node-cidr-mask-size`.
    pub node_cidr_mask_size: u8,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        let d = ControllerConfig::default();
        ControllerSettings {
            node_monitor_period: d.node_monitor_period,
            node_monitor_grace_period: d.node_monitor_grace_period,
            node_startup_grace_period: d.node_startup_grace_period,
            terminated_pod_gc_threshold: d.terminated_pod_gc_threshold,
            node_cidr_mask_size: d.node_cidr_mask_size,
        }
    }
}

/// The controllers' configuration for this server.
pub(crate) fn config(settings: &ControllerSettings, cluster_cidr: &str) -> ControllerConfig {
    ControllerConfig {
        node_monitor_period: settings.node_monitor_period,
        node_monitor_grace_period: settings.node_monitor_grace_period,
        node_startup_grace_period: settings.node_startup_grace_period,
        terminated_pod_gc_threshold: settings.terminated_pod_gc_threshold,
        cluster_cidr: Some(cluster_cidr.to_string()),
        node_cidr_mask_size: settings.node_cidr_mask_size,
        ..ControllerConfig::default()
    }
}

/// Starts the scheduler and the controllers against `api`.
pub(crate) fn start(api: &ApiServer, config: ControllerConfig) -> Result<Running, ServerError> {
    let client = |user: &str| {
        Client::new(
            api.service(Identity::new(user, [CONTROL_PLANE_GROUP])),
            "default",
        )
    };
    let clients = Clients {
        scheduler: client(SCHEDULER_USER),
        controller_manager: client(CONTROLLER_MANAGER_USER),
    };
    let running = skiff_controllers::start(clients, config)?;
    tracing::info!("scheduler and controllers started");
    Ok(running)
}

//! Objects the controllers' unit tests build, in one place so every table test speaks of the
//! same shapes.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A RollingUpdate Deployment of `replicas` with the given surge and unavailability budgets.
pub(crate) fn rolling_deployment(
    replicas: i32,
    surge: IntOrString,
    unavailable: IntOrString,
) -> Deployment {
    Deployment {
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A set named `name`, created `age` seconds after the epoch, with `spec` replicas of which
/// `available` are available (and ready).
pub(crate) fn replica_set(name: &str, age: i64, spec: i32, available: i32) -> Arc<ReplicaSet> {
    let created = jiff::Timestamp::from_second(age).expect("valid timestamp");
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(created)),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: spec,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..Default::default()
        }),
    })
}

/// A pod named `name` in `phase`, bound to `node` (unbound when empty), Ready or not.
pub(crate) fn pod(name: &str, phase: &str, node: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

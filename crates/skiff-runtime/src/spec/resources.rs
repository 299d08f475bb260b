//! Resources → cgroup values with upstream's formulas (kubelet `MilliCPUToShares`,
//! `MilliCPUToQuota`, QoS classes, OOM score adjustment, cgroup v2 weight conversion).

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::error::Result;
use crate::quantity::parse_field;

/// Smallest cpu.shares value (upstream `MinShares`).
pub const MIN_SHARES: u64 = 2;
/// Largest cpu.shares value (upstream `MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// CFS period used with quotas, in microseconds (upstream `QuotaPeriod`).
pub const QUOTA_PERIOD: u64 = 100_000;
/// Smallest quota, in microseconds (upstream `MinQuotaPeriod`).
pub const MIN_QUOTA: i64 = 1_000;

/// The resources one container asks for, as integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// `requests.cpu` in millicores (defaults to the limit, as API defaulting does).
    pub cpu_request_millis: Option<i64>,
    /// `limits.cpu` in millicores.
    pub cpu_limit_millis: Option<i64>,
    /// `requests.memory` in bytes (defaults to the limit).
    pub memory_request: Option<i64>,
    /// `limits.memory` in bytes.
    pub memory_limit: Option<i64>,
}

impl ContainerResources {
    /// Reads `container.resources`; `field` is the container's JSON path for errors.
    pub fn of(container: &Container, field: &str) -> Result<ContainerResources> {
        let res = container.resources.as_ref();
        let get = |kind: &str, name: &str| -> Result<Option<crate::quantity::Quantity>> {
            let map = res.and_then(|r| {
                if kind == "limits" {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            });
            match map.and_then(|m| m.get(name)) {
                Some(q) => Ok(Some(parse_field(
                    &format!("{field}.resources.{kind}.{name}"),
                    q,
                )?)),
                None => Ok(None),
            }
        };
        let cpu_limit = get("limits", "cpu")?.map(|q| q.milli_value());
        let memory_limit = get("limits", "memory")?.map(|q| q.value());
        let cpu_request = get("requests", "cpu")?
            .map(|q| q.milli_value())
            .or(cpu_limit);
        let memory_request = get("requests", "memory")?
            .map(|q| q.value())
            .or(memory_limit);
        Ok(ContainerResources {
            cpu_request_millis: cpu_request,
            cpu_limit_millis: cpu_limit,
            memory_request,
            memory_limit,
        })
    }
}

/// Upstream `MilliCPUToShares`.
pub fn cpu_shares(request_millis: Option<i64>) -> u64 {
    let millis = request_millis.unwrap_or(0);
    if millis <= 0 {
        return MIN_SHARES;
    }
    let shares = (millis as u64).saturating_mul(1024) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream `MilliCPUToQuota` with the default period; `None` means no quota.
pub fn cpu_quota(limit_millis: Option<i64>) -> Option<i64> {
    let millis = limit_millis.filter(|m| *m > 0)?;
    let quota = millis.saturating_mul(QUOTA_PERIOD as i64) / 1000;
    Some(quota.max(MIN_QUOTA))
}

/// cgroup v2 `cpu.weight` for a v1 `cpu.shares` value (the conversion runc and the kubelet use).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(MIN_SHARES, MAX_SHARES) - 2) * 9999) / 262_142
}

/// Pod quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal cpu and memory requests and limits.
    Guaranteed,
    /// Something in between.
    Burstable,
    /// No container sets any request or limit.
    BestEffort,
}

impl QosClass {
    /// The name used in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.as_ref().into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// The pod's QoS class (upstream `GetPodQOS`, cpu and memory only).
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(name));
            let lim = limits.and_then(|m| m.get(name));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            let (Some(lim), req) = (lim, req) else {
                guaranteed = false;
                continue;
            };
            let l = crate::quantity::Quantity::parse(&lim.0)
                .map(|q| q.milli_value())
                .ok();
            let r = match req {
                Some(r) => crate::quantity::Quantity::parse(&r.0)
                    .map(|q| q.milli_value())
                    .ok(),
                None => l,
            };
            if l != r {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// Upstream `GetContainerOOMScoreAdjust`.
pub fn oom_score_adj(qos: QosClass, memory_request: Option<i64>, memory_capacity: i64) -> i32 {
    match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let request = memory_request.unwrap_or(0).max(0) as i128;
            let capacity = i128::from(memory_capacity.max(1));
            let adj = 1000 - (1000 * request) / capacity;
            adj.clamp(3, 999) as i32
        }
    }
}

/// Pod-level cgroup values (upstream `ResourceConfigForPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCgroupResources {
    /// cpu.shares of the pod cgroup.
    pub cpu_shares: u64,
    /// CFS quota of the pod cgroup (only when every container has a cpu limit).
    pub cpu_quota: Option<i64>,
    /// memory limit of the pod cgroup (only when every container has a memory limit).
    pub memory_limit: Option<i64>,
    /// pids limit of the pod cgroup (`None` = unlimited).
    pub pids_limit: Option<i64>,
}

/// Sums the containers' resources into pod-level values: app containers add up, init
/// containers count with their maximum (they run one at a time).
pub fn pod_cgroup_resources(pod: &Pod, pids_limit: Option<i64>) -> Result<PodCgroupResources> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(PodCgroupResources {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_limit: None,
            pids_limit,
        });
    };
    let mut cpu_req = 0i64;
    let mut cpu_lim = Some(0i64);
    let mut mem_lim = Some(0i64);
    for (i, c) in spec.containers.iter().enumerate() {
        let r = ContainerResources::of(c, &format!("spec.containers[{i}]"))?;
        cpu_req += r.cpu_request_millis.unwrap_or(0);
        cpu_lim = cpu_lim.zip(r.cpu_limit_millis).map(|(a, b)| a + b);
        mem_lim = mem_lim.zip(r.memory_limit).map(|(a, b)| a + b);
    }
    let mut init_cpu_req = 0i64;
    let mut init_cpu_lim = Some(0i64);
    let mut init_mem_lim = Some(0i64);
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let r = ContainerResources::of(c, &format!("spec.initContainers[{i}]"))?;
        init_cpu_req = init_cpu_req.max(r.cpu_request_millis.unwrap_or(0));
        init_cpu_lim = init_cpu_lim.zip(r.cpu_limit_millis).map(|(a, b)| a.max(b));
        init_mem_lim = init_mem_lim.zip(r.memory_limit).map(|(a, b)| a.max(b));
    }
    let cpu_lim = cpu_lim.zip(init_cpu_lim).map(|(a, b)| a.max(b));
    let mem_lim = mem_lim.zip(init_mem_lim).map(|(a, b)| a.max(b));
    Ok(PodCgroupResources {
        cpu_shares: cpu_shares(Some(cpu_req.max(init_cpu_req))),
        cpu_quota: cpu_quota(cpu_lim),
        memory_limit: mem_lim.filter(|m| *m > 0),
        pids_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use std::collections::BTreeMap;

    fn container(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| (k.to_string(), Q(q.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_formulas_match_upstream() {
        assert_eq!(cpu_shares(None), 2);
        assert_eq!(cpu_shares(Some(1)), 2);
        assert_eq!(cpu_shares(Some(100)), 102);
        assert_eq!(cpu_shares(Some(1000)), 1024);
        assert_eq!(cpu_shares(Some(1_000_000)), 262_144);
        assert_eq!(cpu_quota(None), None);
        assert_eq!(cpu_quota(Some(500)), Some(50_000));
        assert_eq!(cpu_quota(Some(5)), Some(1_000), "minimum quota");
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn qos_and_oom_score() {
        let g = pod(
            vec![container(&[], &[("cpu", "1"), ("memory", "1Gi")])],
            vec![],
        );
        assert_eq!(qos_class(&g), QosClass::Guaranteed);
        let b = pod(vec![container(&[("memory", "1Gi")], &[])], vec![]);
        assert_eq!(qos_class(&b), QosClass::Burstable);
        let e = pod(vec![container(&[], &[])], vec![]);
        assert_eq!(qos_class(&e), QosClass::BestEffort);
        assert_eq!(oom_score_adj(QosClass::Guaranteed, None, 1 << 30), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, None, 1 << 30), 1000);
        assert_eq!(
            oom_score_adj(QosClass::Burstable, Some(1 << 29), 1 << 30),
            500
        );
        assert_eq!(oom_score_adj(QosClass::Burstable, Some(0), 1 << 30), 999);
        assert_eq!(
            oom_score_adj(QosClass::Burstable, Some(1 << 30), 1 << 30),
            3
        );
    }

    #[test]
    fn pod_level_values_sum_apps_and_max_inits() {
        let p = pod(
            vec![
                container(&[("cpu", "250m")], &[("cpu", "500m"), ("memory", "64Mi")]),
                container(&[("cpu", "250m")], &[("cpu", "1"), ("memory", "64Mi")]),
            ],
            vec![container(
                &[("cpu", "2")],
                &[("cpu", "2"), ("memory", "256Mi")],
            )],
        );
        let r = pod_cgroup_resources(&p, Some(1024)).unwrap();
        assert_eq!(
            r.cpu_shares, 2048,
            "init request 2 cpu beats the app sum of 0.5"
        );
        assert_eq!(r.cpu_quota, Some(200_000));
        assert_eq!(r.memory_limit, Some(256 << 20));
        assert_eq!(r.pids_limit, Some(1024));

        let unlimited = pod(
            vec![
                container(&[("cpu", "1")], &[]),
                container(&[], &[("memory", "1Gi")]),
            ],
            vec![],
        );
        let r = pod_cgroup_resources(&unlimited, None).unwrap();
        assert_eq!(
            r.cpu_quota, None,
            "one container without a cpu limit: no pod quota"
        );
        assert_eq!(r.memory_limit, None);
        assert_eq!(r.cpu_shares, 1024);
    }

    #[test]
    fn bad_quantities_name_the_field() {
        let c = container(&[("cpu", "lots")], &[]);
        let err = ContainerResources::of(&c, "spec.containers[0]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.containers[0].resources.requests.cpu"),
            "{err}"
        );
    }
}

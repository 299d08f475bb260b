//! Table tests of [`plan_slices`] and the pod → endpoint rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn service(ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            labels: Some(BTreeMap::from([("tier".into(), "front".into())])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(ports),
            cluster_ip: Some("10.43.0.20".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        protocol: Some("TCP".into()),
        target_port: Some(target),
        ..Default::default()
    }
}

fn http_service() -> Service {
    service(vec![port("http", 80, IntOrString::Int(8080))])
}

/// A running pod `name` of app `web` with `ip` ("" for none), Ready or not, whose container
/// names port 8080 `http`.
fn pod(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()).filter(|i: &String| !i.is_empty()),
            pod_ips: Some(ip)
                .filter(|i| !i.is_empty())
                .map(|i| vec![PodIP { ip: i.into() }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    })
}

/// The plan's slices as the server would store them (names given), so a second plan can run.
fn stored(plan: &SlicePlan) -> Vec<Arc<EndpointSlice>> {
    plan.create
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.metadata.name = Some(format!("web-{i:05}"));
            s.metadata.resource_version = Some("1".into());
            Arc::new(s)
        })
        .collect()
}

fn addresses(slice: &EndpointSlice) -> Vec<(&str, Option<bool>)> {
    slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].as_str(),
                e.conditions.as_ref().and_then(|c| c.ready),
            )
        })
        .collect()
}

#[test]
fn selected_pods_become_one_slice_with_upstreams_metadata() {
    let pods = vec![
        pod("web-a", "10.42.0.5", true),
        pod("web-b", "10.42.0.6", false),
        pod("web-c", "", true),
    ];
    let plan = plan_slices(&http_service(), &pods, &[]);
    assert_eq!((plan.update.len(), plan.delete.len()), (0, 0));
    let [slice] = plan.create.as_slice() else {
        panic!("one slice: {plan:?}")
    };
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[LABEL_SERVICE_NAME], "web");
    assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
    assert_eq!(labels["tier"], "front");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );
    assert_eq!(
        addresses(slice),
        [("10.42.0.5", Some(true)), ("10.42.0.6", Some(false))]
    );
    let e = &slice.endpoints[1];
    let c = e.conditions.as_ref().unwrap();
    assert_eq!((c.serving, c.terminating), (Some(false), Some(false)));
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    let target = e.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("web-b"))
    );
    let p = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (p.name.as_deref(), p.port, p.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );

    // Planning again against what was stored changes nothing.
    let again = plan_slices(&http_service(), &pods, &stored(&plan));
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn readiness_changes_rewrite_the_slice_in_place() {
    let before = vec![
        pod("web-a", "10.42.0.5", true),
        pod("web-b", "10.42.0.6", true),
    ];
    let existing = stored(&plan_slices(&http_service(), &before, &[]));
    let after = vec![
        pod("web-a", "10.42.0.5", true),
        pod("web-b", "10.42.0.6", false),
    ];
    let plan = plan_slices(&http_service(), &after, &existing);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let [slice] = plan.update.as_slice() else {
        panic!("one update: {plan:?}")
    };
    assert_eq!(slice.metadata.name.as_deref(), Some("web-00000"));
    assert_eq!(
        addresses(slice),
        [("10.42.0.5", Some(true)), ("10.42.0.6", Some(false))]
    );
}

#[test]
fn terminating_terminal_and_unselected_pods() {
    let mut terminating = (*pod("web-t", "10.42.0.7", true)).clone();
    terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let mut done = (*pod("web-d", "10.42.0.8", false)).clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut other = (*pod("other", "10.42.0.9", true)).clone();
    other.metadata.labels = Some(BTreeMap::from([("app".into(), "db".into())]));
    let pods = vec![
        Arc::new(terminating.clone()),
        Arc::new(done),
        Arc::new(other),
    ];

    let plan = plan_slices(&http_service(), &pods, &[]);
    let slice = &plan.create[0];
    assert_eq!(addresses(slice), [("10.42.0.7", Some(false))]);
    let c = slice.endpoints[0].conditions.as_ref().unwrap();
    assert_eq!((c.serving, c.terminating), (Some(true), Some(true)));

    // publishNotReadyAddresses: ready regardless.
    let mut publish = http_service();
    publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let pods = vec![Arc::new(terminating), pod("web-b", "10.42.0.6", false)];
    let plan = plan_slices(&publish, &pods, &[]);
    assert_eq!(
        addresses(&plan.create[0]),
        [("10.42.0.6", Some(true)), ("10.42.0.7", Some(true))]
    );
}

#[test]
fn named_target_ports_resolve_per_pod_and_group_the_rest() {
    let svc = service(vec![port("http", 80, IntOrString::String("http".into()))]);
    let mut unnamed = (*pod("web-x", "10.42.0.9", true)).clone();
    unnamed.spec.as_mut().unwrap().containers[0].ports = None;
    let pods = vec![pod("web-a", "10.42.0.5", true), Arc::new(unnamed)];
    let plan = plan_slices(&svc, &pods, &[]);
    assert_eq!(plan.create.len(), 2, "{plan:?}");
    let mut by_ports: Vec<(usize, Vec<&str>)> = plan
        .create
        .iter()
        .map(|s| {
            (
                s.ports.as_ref().map_or(0, Vec::len),
                addresses(s).into_iter().map(|(a, _)| a).collect(),
            )
        })
        .collect();
    by_ports.sort();
    assert_eq!(by_ports, [(0, vec!["10.42.0.9"]), (1, vec!["10.42.0.5"])]);
    let resolved = plan
        .create
        .iter()
        .find(|s| s.ports.as_ref().is_some_and(|p| !p.is_empty()))
        .unwrap();
    assert_eq!(resolved.ports.as_ref().unwrap()[0].port, Some(8080));
}

#[test]
fn a_hundred_endpoints_per_slice_at_most() {
    let pods: Vec<Arc<Pod>> = (0..250)
        .map(|i| {
            pod(
                &format!("web-{i:03}"),
                &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    let plan = plan_slices(&http_service(), &pods, &[]);
    let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);

    // Ten pods go: only the slices that held them change.
    let existing = stored(&plan);
    let fewer: Vec<Arc<Pod>> = pods[10..].to_vec();
    let plan = plan_slices(&http_service(), &fewer, &existing);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    let updated: Vec<(&str, usize)> = plan
        .update
        .iter()
        .map(|s| (s.metadata.name.as_deref().unwrap(), s.endpoints.len()))
        .collect();
    assert_eq!(updated, [("web-00000", 90)]);
}

#[test]
fn no_endpoints_keep_one_placeholder_slice() {
    let plan = plan_slices(&http_service(), &[], &[]);
    let [placeholder] = plan.create.as_slice() else {
        panic!("placeholder: {plan:?}")
    };
    assert!(placeholder.endpoints.is_empty());
    assert_eq!(placeholder.ports.as_deref(), Some(&[][..]));
    let existing = stored(&plan);
    assert!(plan_slices(&http_service(), &[], &existing).is_empty());

    // The first pod replaces the placeholder; the last one leaving brings it back.
    let pods = vec![pod("web-a", "10.42.0.5", true)];
    let plan = plan_slices(&http_service(), &pods, &existing);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.delete, ["web-00000"]);
    let filled = stored(&plan);
    let plan = plan_slices(&http_service(), &[], &filled);
    assert_eq!(plan.delete, ["web-00000"]);
    assert_eq!(plan.create.len(), 1);
    assert!(plan.create[0].endpoints.is_empty());
}

#[test]
fn hostnames_only_under_the_pods_subdomain() {
    let mut named = (*pod("web-a", "10.42.0.5", true)).clone();
    let spec = named.spec.as_mut().unwrap();
    spec.hostname = Some("host-a".into());
    spec.subdomain = Some("web".into());
    let mut elsewhere = (*pod("web-b", "10.42.0.6", true)).clone();
    let spec = elsewhere.spec.as_mut().unwrap();
    spec.hostname = Some("host-b".into());
    spec.subdomain = Some("other".into());
    let plan = plan_slices(
        &http_service(),
        &[Arc::new(named), Arc::new(elsewhere)],
        &[],
    );
    let hostnames: Vec<Option<&str>> = plan.create[0]
        .endpoints
        .iter()
        .map(|e| e.hostname.as_deref())
        .collect();
    assert_eq!(hostnames, [Some("host-a"), None]);
}

#[test]
fn services_without_selectors_are_not_managed() {
    let mut manual = http_service();
    manual.spec.as_mut().unwrap().selector = None;
    assert!(!has_selector(&manual));
    let mut external = http_service();
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    assert!(!has_selector(&external));
    assert!(has_selector(&http_service()));
}

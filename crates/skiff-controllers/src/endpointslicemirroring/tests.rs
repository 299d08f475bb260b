//! Table tests of [`plan_mirror`] and [`should_mirror`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Service, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

/// A subset: ready IPs, not-ready IPs, ports as (name, port, protocol).
type Subset<'a> = (&'a [&'a str], &'a [&'a str], &'a [(&'a str, i32, &'a str)]);

/// The Endpoints `ext` with a `team` label, two annotations (one not copied) and `subsets`:
/// (ready IPs, not-ready IPs, ports as (name, port, protocol)).
fn endpoints(subsets: &[Subset<'_>]) -> Endpoints {
    let address = |ip: &&str| EndpointAddress {
        ip: ip.to_string(),
        node_name: Some("n1".into()),
        ..Default::default()
    };
    Endpoints {
        metadata: ObjectMeta {
            name: Some("ext".into()),
            namespace: Some("default".into()),
            uid: Some("ep-uid".into()),
            labels: Some(BTreeMap::from([("team".into(), "db".into())])),
            annotations: Some(BTreeMap::from([
                ("note".into(), "hand-written".into()),
                (NOT_COPIED[1].into(), "{}".into()),
            ])),
            ..Default::default()
        },
        subsets: Some(
            subsets
                .iter()
                .map(|(ready, not_ready, ports)| EndpointSubset {
                    addresses: Some(ready.iter().map(address).collect())
                        .filter(|a: &Vec<_>| !a.is_empty()),
                    not_ready_addresses: Some(not_ready.iter().map(address).collect())
                        .filter(|a: &Vec<_>| !a.is_empty()),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(name, port, protocol)| CorePort {
                                name: Some(name.to_string()),
                                port: *port,
                                protocol: Some(protocol.to_string()),
                                app_protocol: None,
                            })
                            .collect(),
                    ),
                })
                .collect(),
        ),
    }
}

const HTTP: &[(&str, i32, &str)] = &[("http", 80, "TCP")];

/// The slices `plan` writes, as they would be stored under `names` (for creates, in order).
fn stored(plan: &MirrorPlan, names: &[&str]) -> Vec<Arc<EndpointSlice>> {
    let mut out: Vec<Arc<EndpointSlice>> = plan.update.iter().cloned().map(Arc::new).collect();
    for (slice, name) in plan.create.iter().zip(names) {
        let mut slice = slice.clone();
        slice.metadata.name = Some(name.to_string());
        slice.metadata.generate_name = None;
        slice.metadata.resource_version = Some("7".into());
        out.push(Arc::new(slice));
    }
    out
}

/// (address, ready) of a slice's endpoints.
fn view(slice: &EndpointSlice) -> Vec<(String, bool)> {
    slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready) == Some(true),
            )
        })
        .collect()
}

#[test]
fn a_new_endpoints_is_mirrored_into_one_slice_per_port_set() {
    let ep = endpoints(&[
        (&["10.0.0.2", "10.0.0.1"], &["10.0.0.3"], HTTP),
        (&["10.0.0.9"], &[], &[("dns", 53, "UDP")]),
    ]);
    let plan = plan_mirror(&ep, true, &[], MAX_ENDPOINTS_PER_SUBSET);
    assert!(plan.update.is_empty() && plan.delete.is_empty(), "{plan:?}");
    assert_eq!(plan.create.len(), 2);
    let http = plan
        .create
        .iter()
        .find(|s| s.ports.as_ref().unwrap()[0].port == Some(80))
        .unwrap();
    assert_eq!(http.address_type, "IPv4");
    assert_eq!(http.metadata.generate_name.as_deref(), Some("ext-"));
    assert_eq!(
        view(http),
        [
            ("10.0.0.1".into(), true),
            ("10.0.0.2".into(), true),
            ("10.0.0.3".into(), false)
        ]
    );
    assert_eq!(http.endpoints[0].node_name.as_deref(), Some("n1"));
    let labels = http.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "db");
    assert_eq!(labels[LABEL_SERVICE_NAME], "ext");
    assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
    let annotations = http.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["note"]);
    let owner = &http.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Endpoints", "ext", "ep-uid")
    );
    assert_eq!(owner.controller, Some(true));
    let dns = plan
        .create
        .iter()
        .find(|s| s.ports.as_ref().unwrap()[0].port == Some(53))
        .unwrap();
    let port = &dns.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.protocol.as_deref()),
        (Some("dns"), Some("UDP"))
    );
    assert_eq!(view(dns), [("10.0.0.9".into(), true)]);
}

#[test]
fn plans_follow_the_endpoints() {
    let base = endpoints(&[(&["10.0.0.1", "10.0.0.2"], &[], HTTP)]);
    let first = plan_mirror(&base, true, &[], MAX_ENDPOINTS_PER_SUBSET);
    let existing = stored(&first, &["ext-abcde"]);

    struct Case {
        name: &'static str,
        endpoints: Endpoints,
        mirror: bool,
        /// (slice name, endpoints) updated.
        update: Vec<(&'static str, Vec<(&'static str, bool)>)>,
        create: usize,
        delete: Vec<&'static str>,
    }
    let mut relabelled = base.clone();
    relabelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "web".into());
    let cases = vec![
        Case {
            name: "unchanged: nothing to write",
            endpoints: base.clone(),
            mirror: true,
            update: vec![],
            create: 0,
            delete: vec![],
        },
        Case {
            name: "an address goes, another turns not-ready",
            endpoints: endpoints(&[(&["10.0.0.2"], &["10.0.0.5"], HTTP)]),
            mirror: true,
            update: vec![("ext-abcde", vec![("10.0.0.2", true), ("10.0.0.5", false)])],
            create: 0,
            delete: vec![],
        },
        Case {
            name: "a label changes: the slice follows",
            endpoints: relabelled,
            mirror: true,
            update: vec![("ext-abcde", vec![("10.0.0.1", true), ("10.0.0.2", true)])],
            create: 0,
            delete: vec![],
        },
        Case {
            name: "new ports: the old slice is reused, not deleted and created",
            endpoints: endpoints(&[(&["10.0.0.1"], &[], &[("http", 8080, "TCP")])]),
            mirror: true,
            update: vec![("ext-abcde", vec![("10.0.0.1", true)])],
            create: 0,
            delete: vec![],
        },
        Case {
            name: "no addresses left: the slice goes",
            endpoints: endpoints(&[(&[], &[], HTTP)]),
            mirror: true,
            update: vec![],
            create: 0,
            delete: vec!["ext-abcde"],
        },
        Case {
            name: "no subsets at all: the slice goes",
            endpoints: Endpoints {
                subsets: None,
                ..base.clone()
            },
            mirror: true,
            update: vec![],
            create: 0,
            delete: vec!["ext-abcde"],
        },
        Case {
            name: "not mirrored any more (skip-mirror, selector, no Service): the slice goes",
            endpoints: base.clone(),
            mirror: false,
            update: vec![],
            create: 0,
            delete: vec!["ext-abcde"],
        },
        Case {
            name: "IPv6 address: a second slice of its own type",
            endpoints: endpoints(&[(&["10.0.0.1", "10.0.0.2", "fd00::1"], &[], HTTP)]),
            mirror: true,
            update: vec![],
            create: 1,
            delete: vec![],
        },
    ];
    for case in cases {
        let plan = plan_mirror(
            &case.endpoints,
            case.mirror,
            &existing,
            MAX_ENDPOINTS_PER_SUBSET,
        );
        let update: Vec<(&str, Vec<(String, bool)>)> = plan
            .update
            .iter()
            .map(|s| (name_of(&s.metadata), view(s)))
            .collect();
        let want: Vec<(&str, Vec<(String, bool)>)> = case
            .update
            .iter()
            .map(|(n, e)| (*n, e.iter().map(|(a, r)| (a.to_string(), *r)).collect()))
            .collect();
        assert_eq!(update, want, "{}", case.name);
        for slice in &plan.update {
            assert_eq!(
                slice.metadata.resource_version.as_deref(),
                Some("7"),
                "{}: the update keeps the resourceVersion",
                case.name
            );
        }
        assert_eq!(plan.create.len(), case.create, "{}", case.name);
        assert_eq!(plan.delete, case.delete, "{}", case.name);
    }
}

#[test]
fn extra_and_foreign_typed_slices_are_deleted() {
    let ep = endpoints(&[(&["10.0.0.1"], &[], HTTP)]);
    let first = plan_mirror(&ep, true, &[], MAX_ENDPOINTS_PER_SUBSET);
    // Two slices for the same port set (a lagging cache made a duplicate): the first by name
    // is kept, the other deleted.
    let existing = stored(
        &MirrorPlan {
            create: vec![first.create[0].clone(), first.create[0].clone()],
            ..Default::default()
        },
        &["ext-b", "ext-a"],
    );
    let plan = plan_mirror(&ep, true, &existing, MAX_ENDPOINTS_PER_SUBSET);
    assert!(plan.update.is_empty() && plan.create.is_empty(), "{plan:?}");
    assert_eq!(plan.delete, ["ext-b"]);
}

#[test]
fn subsets_are_truncated_at_the_limit_and_invalid_addresses_skipped() {
    let ready: Vec<String> = (0..7).map(|i| format!("10.0.1.{i}")).collect();
    let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
    let ep = endpoints(&[
        (&ready, &["10.0.2.1"], HTTP),
        (&["not-an-ip", "10.0.3.1"], &[], &[("dns", 53, "UDP")]),
    ]);
    let plan = plan_mirror(&ep, true, &[], 5);
    assert_eq!(plan.skipped_over_limit, 3, "{plan:?}");
    assert_eq!(plan.invalid, 1);
    let http = plan
        .create
        .iter()
        .find(|s| s.ports.as_ref().unwrap()[0].port == Some(80))
        .unwrap();
    // Ready addresses first, so the not-ready one is what was cut.
    assert_eq!(http.endpoints.len(), 5);
    assert!(view(http).iter().all(|(_, ready)| *ready));
    let dns = plan
        .create
        .iter()
        .find(|s| s.ports.as_ref().unwrap()[0].port == Some(53))
        .unwrap();
    assert_eq!(view(dns), [("10.0.3.1".into(), true)]);
    // The default is upstream's 1000.
    let many: Vec<String> = (0..1005)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let plan = plan_mirror(
        &endpoints(&[(&many, &[], HTTP)]),
        true,
        &[],
        MAX_ENDPOINTS_PER_SUBSET,
    );
    assert_eq!(plan.create[0].endpoints.len(), 1000);
    assert_eq!(plan.skipped_over_limit, 5);
}

#[test]
fn only_endpoints_of_selectorless_services_are_mirrored() {
    let ep = endpoints(&[(&["10.0.0.1"], &[], HTTP)]);
    let service = |selector: Option<&[(&str, &str)]>| Service {
        metadata: ObjectMeta {
            name: Some("ext".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: selector.map(|s| {
                s.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut skip = ep.clone();
    skip.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_SKIP_MIRROR.into(), "true".into());
    let mut skip_false = ep.clone();
    skip_false
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_SKIP_MIRROR.into(), "false".into());
    let mut leader = ep.clone();
    leader
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(LEADER_ANNOTATION.into(), "{}".into());
    let cases: Vec<(&str, &Endpoints, Option<Service>, bool)> = vec![
        ("selectorless Service", &ep, Some(service(None)), true),
        ("empty selector", &ep, Some(service(Some(&[]))), true),
        (
            "Service with a selector",
            &ep,
            Some(service(Some(&[("app", "db")]))),
            false,
        ),
        ("no Service", &ep, None, false),
        ("skip-mirror", &skip, Some(service(None)), false),
        ("skip-mirror false", &skip_false, Some(service(None)), true),
        ("leader election", &leader, Some(service(None)), false),
    ];
    for (name, endpoints, service, want) in cases {
        assert_eq!(should_mirror(endpoints, service.as_ref()), want, "{name}");
    }
}

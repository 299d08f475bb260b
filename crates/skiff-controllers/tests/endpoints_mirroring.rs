//! Issue 13: the Endpoints a user writes by hand for a Service without a selector are mirrored
//! into EndpointSlices (which the proxy and the DNS read), through the real API on redb with
//! every controller running: created, updated, truncated with a warning event, skipped when
//! labelled skip-mirror, removed when the Endpoints go or the Service gets a selector; slices
//! managed by others and the hand-written Endpoints themselves are left alone.

mod common;

use std::time::Duration;

use common::{fast_config, wait_for, Cluster};
use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(15);
const MIRRORED: &str = "endpointslicemirroring-controller.k8s.io";

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

fn selectorless_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
    })
}

/// Endpoints `name` with one subset: `ready` and `not_ready` addresses on port 5432 `pg`.
fn endpoints(name: &str, labels: Value, ready: &[&str], not_ready: &[&str]) -> Value {
    let addresses = |ips: &[&str]| -> Value {
        ips.iter()
            .map(|ip| json!({"ip": ip, "nodeName": "db-host"}))
            .collect()
    };
    let mut subset = json!({"ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]});
    if !ready.is_empty() {
        subset["addresses"] = addresses(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = addresses(not_ready);
    }
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "subsets": [subset],
    })
}

/// A slice as the test compares it: (name, manager, [(address, ready)]).
type SliceView = (String, String, Vec<(String, bool)>);

/// The slices labelled for `service`, by manager.
async fn slices(client: &Client, service: &str) -> Vec<SliceView> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let list = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list slices");
    let mut out: Vec<SliceView> = list
        .items
        .iter()
        .map(|s| {
            let mut endpoints: Vec<(String, bool)> = s
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.addresses[0].clone(),
                        e.conditions.as_ref().and_then(|c| c.ready) == Some(true),
                    )
                })
                .collect();
            endpoints.sort();
            (
                s.metadata.name.clone().unwrap_or_default(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                    .cloned()
                    .unwrap_or_default(),
                endpoints,
            )
        })
        .collect();
    out.sort();
    out
}

/// The endpoints of the one mirrored slice of `service`, once it lists `want`; its name.
async fn mirrored_once(client: &Client, service: &str, want: &[(&str, bool)]) -> String {
    let want: Vec<(String, bool)> = want.iter().map(|(a, r)| (a.to_string(), *r)).collect();
    wait_for(TIMEOUT, &format!("{service} mirrored as {want:?}"), || {
        let want = want.clone();
        async move {
            let mirrored: Vec<_> = slices(client, service)
                .await
                .into_iter()
                .filter(|(_, manager, _)| manager == MIRRORED)
                .collect();
            match mirrored.as_slice() {
                [(name, _, endpoints)] if *endpoints == want => Some(name.clone()),
                _ => None,
            }
        }
    })
    .await
}

async fn no_mirrored_slices(client: &Client, service: &str, what: &str) {
    wait_for(TIMEOUT, what, || async {
        slices(client, service)
            .await
            .iter()
            .all(|(_, manager, _)| manager != MIRRORED)
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_endpoints_of_selectorless_services_are_mirrored() {
    let mut config = fast_config();
    config.mirroring_max_endpoints_per_subset = 3;
    let cluster = Cluster::start(config).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // A selectorless Service and its hand-written Endpoints: one mirrored slice, ready and
    // not-ready addresses as conditions, the Endpoints' labels, controlled by the Endpoints.
    create(&services, selectorless_service("ext")).await;
    let written: Endpoints = create(
        &eps,
        endpoints(
            "ext",
            json!({"team": "db"}),
            &["10.1.0.2", "10.1.0.1"],
            &["10.1.0.3"],
        ),
    )
    .await;
    // Someone else's slice for the same Service is left alone throughout.
    create(
        &slice_api,
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "ext-manual", "namespace": "default", "labels": {
                "kubernetes.io/service-name": "ext",
                "endpointslice.kubernetes.io/managed-by": "someone-else",
            }},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.9.9.9"]}],
        }),
    )
    .await;
    let name = mirrored_once(
        &client,
        "ext",
        &[("10.1.0.1", true), ("10.1.0.2", true), ("10.1.0.3", false)],
    )
    .await;
    let slice = slice_api.get(&name).await.unwrap();
    assert!(name.starts_with("ext-"), "{name}");
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels["team"], "db");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Endpoints", "ext")
    );
    assert_eq!(Some(&owner.uid), written.metadata.uid.as_ref());
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("pg"), Some(5432), Some("TCP"))
    );
    assert_eq!(
        slice.endpoints[0].node_name.as_deref(),
        Some("db-host"),
        "{slice:?}"
    );

    // An update changes the same slice.
    let mut current = eps.get("ext").await.unwrap();
    let updated: Endpoints =
        serde_json::from_value(endpoints("ext", json!({"team": "db"}), &["10.1.0.9"], &[]))
            .unwrap();
    current.subsets = updated.subsets;
    eps.replace("ext", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        mirrored_once(&client, "ext", &[("10.1.0.9", true)]).await,
        name,
        "the slice is updated in place"
    );

    // More addresses in a subset than the limit: the first ones are mirrored, and a warning
    // event says how many were skipped.
    create(&services, selectorless_service("big")).await;
    create(
        &eps,
        endpoints(
            "big",
            json!({}),
            &["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.4", "10.2.0.5"],
            &[],
        ),
    )
    .await;
    mirrored_once(
        &client,
        "big",
        &[("10.2.0.1", true), ("10.2.0.2", true), ("10.2.0.3", true)],
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(TIMEOUT, "the TooManyAddressesToMirror event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("TooManyAddressesToMirror")
                    && e.involved_object.name.as_deref() == Some("big")
            })
            .filter(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref()
                        == Some(
                            "A max of 3 addresses can be mirrored to EndpointSlices per \
                             Endpoints subset. 2 addresses were skipped",
                        )
            })
    })
    .await;

    // skip-mirror: Endpoints labelled so get no slice, and a mirrored one loses its slice.
    create(&services, selectorless_service("skip")).await;
    create(
        &eps,
        endpoints(
            "skip",
            json!({"endpointslice.kubernetes.io/skip-mirror": "true"}),
            &["10.3.0.1"],
            &[],
        ),
    )
    .await;
    let label = |value: Value| {
        Patch::Merge(json!({"metadata": {"labels": {
            "endpointslice.kubernetes.io/skip-mirror": value
        }}}))
    };
    eps.patch("ext", &PatchParams::default(), &label(json!("true")))
        .await
        .unwrap();
    no_mirrored_slices(&client, "ext", "ext's slice to go once skip-mirror").await;
    eps.patch("ext", &PatchParams::default(), &label(Value::Null))
        .await
        .unwrap();
    mirrored_once(&client, "ext", &[("10.1.0.9", true)]).await;
    // By now the controller has handled "skip" too (it was written before "ext"'s label).
    assert!(
        slices(&client, "skip").await.is_empty(),
        "{:?}",
        slices(&client, "skip").await
    );

    // The Endpoints controller leaves the hand-written Endpoints of a selectorless Service
    // alone (no skip-mirror label, its subsets as written).
    let kept = eps.get("ext").await.unwrap();
    let labels = kept.metadata.labels.clone().unwrap_or_default();
    assert!(
        !labels.contains_key("endpointslice.kubernetes.io/skip-mirror"),
        "{labels:?}"
    );
    assert_eq!(
        kept.subsets.as_ref().unwrap()[0]
            .addresses
            .as_ref()
            .unwrap()[0]
            .ip,
        "10.1.0.9"
    );

    // The Endpoints go: their slices go with them; someone else's slice stays.
    eps.delete("ext", &DeleteParams::default()).await.unwrap();
    no_mirrored_slices(&client, "ext", "ext's slice to go with its Endpoints").await;
    let left = slices(&client, "ext").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, "ext-manual");

    // The Service gets a selector: its mirrored slices go (the EndpointSlice controller takes
    // over).
    mirrored_once(
        &client,
        "big",
        &[("10.2.0.1", true), ("10.2.0.2", true), ("10.2.0.3", true)],
    )
    .await;
    services
        .patch(
            "big",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app": "big"}}})),
        )
        .await
        .unwrap();
    no_mirrored_slices(&client, "big", "big's mirrored slice to go with a selector").await;

    cluster.stop().await;
}

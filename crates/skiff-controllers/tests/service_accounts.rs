//! The service account controller against a real API server: every active namespace gets a
//! `default` ServiceAccount, also the system namespaces on start; a deleted one comes back;
//! a terminating namespace gets none.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn wait_default_account(client: &Client, namespace: &str) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(T, &format!("ServiceAccount {namespace}/default"), || {
        let api = api.clone();
        async move { api.get_opt("default").await.ok().flatten() }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_account_which_comes_back_when_deleted() {
    let cluster = Cluster::start(fast_config()).await;
    let client = cluster.client.clone();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        wait_default_account(&client, ns).await;
    }

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let first = wait_default_account(&client, "team").await;

    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .expect("delete the default account");
    let again = wait_for(T, "a new default ServiceAccount in team", || {
        let accounts = accounts.clone();
        let old = first.metadata.uid.clone();
        async move {
            let sa = accounts.get_opt("default").await.ok().flatten()?;
            (sa.metadata.uid != old).then_some(sa)
        }
    })
    .await;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));

    // Other accounts are none of its business.
    let other: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "builder"}})).expect("account");
    accounts
        .create(&PostParams::default(), &other)
        .await
        .expect("create builder");
    accounts
        .delete("builder", &DeleteParams::default())
        .await
        .expect("delete builder");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(accounts.get_opt("builder").await.expect("get").is_none());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_gets_no_new_account() {
    let cluster = Cluster::start(fast_config()).await;
    let client = cluster.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "leaving"}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    wait_default_account(&client, "leaving").await;
    namespaces
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("delete namespace");
    wait_for(T, "namespace leaving gone", || {
        let namespaces = namespaces.clone();
        async move {
            match namespaces.get_opt("leaving").await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await;
    // Emptied and removed: the controller did not put an account back while it terminated.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "leaving");
    assert!(accounts.get_opt("default").await.expect("get").is_none());
    cluster.stop().await;
}

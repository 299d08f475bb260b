//! Lists: order, namespaces, selectors, pagination consistent at one revision, exact lists.

mod common;

use common::*;
use serde_json::json;
use skiff_store::{
    FieldSelector, LabelSelector, ListOptions, Preconditions, ResourceVersionMatch, StoreError,
};

fn names(page: &skiff_store::ListPage) -> Vec<String> {
    page.items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.key().namespace.as_deref().unwrap_or(""),
                o.key().name
            )
        })
        .collect()
}

async fn seed(store: &skiff_store::Store) {
    for (ns, name, node, app) in [
        ("b", "p2", Some("n1"), "web"),
        ("a", "p1", Some("n2"), "db"),
        ("a-x", "p0", None, "web"),
        ("a", "p3", None, "web"),
        ("b", "p1", Some("n1"), "db"),
    ] {
        store
            .create(&pod_key(ns, name), pod(name, node, json!({"app": app})))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn order_namespaces_and_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    seed(&store).await;
    let all = store.list("pods", None, &ListOptions::default()).unwrap();
    // Upstream (etcd key) order: "a-x/" sorts before "a/".
    assert_eq!(names(&all), ["a-x/p0", "a/p1", "a/p3", "b/p1", "b/p2"]);
    assert_eq!(all.revision, 5);
    assert!(all.continue_token.is_none());
    assert_eq!(all.remaining_item_count, None);

    let a = store
        .list("pods", Some("a"), &ListOptions::default())
        .unwrap();
    assert_eq!(names(&a), ["a/p1", "a/p3"]);

    let web = store
        .list(
            "pods",
            None,
            &ListOptions {
                label_selector: Some(LabelSelector::parse("app=web").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(names(&web), ["a-x/p0", "a/p3", "b/p2"]);

    let on_n1 = store
        .list(
            "pods",
            None,
            &ListOptions {
                field_selector: Some(FieldSelector::parse("spec.nodeName=n1").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(names(&on_n1), ["b/p1", "b/p2"]);

    let unscheduled = store
        .list(
            "pods",
            None,
            &ListOptions {
                field_selector: Some(FieldSelector::parse("spec.nodeName=").unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(names(&unscheduled), ["a-x/p0", "a/p3"]);

    let both = store
        .list(
            "pods",
            Some("b"),
            &ListOptions {
                label_selector: Some(LabelSelector::parse("app in (db)").unwrap()),
                field_selector: Some(
                    FieldSelector::parse("metadata.name=p1,status.phase=Pending").unwrap(),
                ),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(names(&both), ["b/p1"]);
    assert!(store
        .list("nodes", None, &ListOptions::default())
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn pagination_is_consistent_at_the_first_page_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..10 {
        let name = format!("p{i:02}");
        store
            .create(&pod_key("ns", &name), pod(&name, None, json!({})))
            .await
            .unwrap();
    }
    let opts = |cont: Option<String>| ListOptions {
        limit: Some(3),
        continue_token: cont,
        ..Default::default()
    };
    let p1 = store.list("pods", Some("ns"), &opts(None)).unwrap();
    assert_eq!(names(&p1), ["ns/p00", "ns/p01", "ns/p02"]);
    assert_eq!(p1.remaining_item_count, Some(7));
    let rev = p1.revision;

    // Changes after the first page must not show up in later pages.
    store
        .delete(&pod_key("ns", "p04"), Preconditions::default())
        .await
        .unwrap();
    store
        .create(&pod_key("ns", "p035"), pod("p035", None, json!({})))
        .await
        .unwrap();
    let mut p05 = store.get(&pod_key("ns", "p05")).unwrap().value();
    p05["metadata"]["labels"] = json!({"changed": "yes"});
    store.update(&pod_key("ns", "p05"), p05).await.unwrap();

    let p2 = store
        .list("pods", Some("ns"), &opts(p1.continue_token.clone()))
        .unwrap();
    assert_eq!(p2.revision, rev);
    assert_eq!(names(&p2), ["ns/p03", "ns/p04", "ns/p05"]);
    assert!(p2.items[2].value()["metadata"]["labels"]
        .get("changed")
        .is_none());
    assert_eq!(p2.items[2].revision(), 6);
    let p3 = store
        .list("pods", Some("ns"), &opts(p2.continue_token.clone()))
        .unwrap();
    assert_eq!(names(&p3), ["ns/p06", "ns/p07", "ns/p08"]);
    let p4 = store
        .list("pods", Some("ns"), &opts(p3.continue_token.clone()))
        .unwrap();
    assert_eq!(names(&p4), ["ns/p09"]);
    assert!(p4.continue_token.is_none());
    assert_eq!(p4.remaining_item_count, None);

    // A fresh list sees the new state.
    let now = store
        .list("pods", Some("ns"), &ListOptions::default())
        .unwrap();
    assert_eq!(now.items.len(), 10);
    assert!(names(&now).contains(&"ns/p035".to_string()));
    assert!(!names(&now).contains(&"ns/p04".to_string()));
}

#[tokio::test]
async fn continue_without_cached_snapshot_rebuilds_from_history() {
    // Reopening the store drops the snapshot cache: the page is rebuilt from the history.
    let dir = tempfile::tempdir().unwrap();
    let token;
    let rev;
    {
        let store = open(&dir);
        for i in 0..6 {
            let name = format!("p{i}");
            store
                .create(&pod_key("ns", &name), pod(&name, None, json!({})))
                .await
                .unwrap();
        }
        let p1 = store
            .list(
                "pods",
                None,
                &ListOptions {
                    limit: Some(2),
                    ..Default::default()
                },
            )
            .unwrap();
        token = p1.continue_token.unwrap();
        rev = p1.revision;
        store
            .delete(&pod_key("ns", "p3"), Preconditions::default())
            .await
            .unwrap();
        let mut v = store.get(&pod_key("ns", "p2")).unwrap().value();
        v["spec"]["x"] = json!(1);
        store.update(&pod_key("ns", "p2"), v).await.unwrap();
        store.close().await;
    }
    let store = open(&dir);
    let p2 = store
        .list(
            "pods",
            None,
            &ListOptions {
                limit: Some(2),
                continue_token: Some(token),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p2.revision, rev);
    assert_eq!(names(&p2), ["ns/p2", "ns/p3"]);
    assert_eq!(p2.items[0].revision(), 3);
    assert!(p2.items[0].value()["spec"].get("x").is_none());
}

#[tokio::test]
async fn selector_pages_and_compacted_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..10 {
        let name = format!("p{i}");
        let app = if i % 2 == 0 { "even" } else { "odd" };
        store
            .create(&pod_key("ns", &name), pod(&name, None, json!({"app": app})))
            .await
            .unwrap();
    }
    let sel = LabelSelector::parse("app=even").unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(
                "pods",
                None,
                &ListOptions {
                    label_selector: Some(sel.clone()),
                    limit: Some(2),
                    continue_token: token.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(page.remaining_item_count, None, "no count with selectors");
        seen.extend(names(&page));
        token = page.continue_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["ns/p0", "ns/p2", "ns/p4", "ns/p6", "ns/p8"]);

    let p1 = store
        .list(
            "pods",
            None,
            &ListOptions {
                limit: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
    store
        .create(&pod_key("ns", "later"), pod("later", None, json!({})))
        .await
        .unwrap();
    store.compact(store.revision()).await.unwrap();
    let err = store
        .list(
            "pods",
            None,
            &ListOptions {
                limit: Some(4),
                continue_token: p1.continue_token,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ContinueExpired {
                requested: 10,
                compacted: 11
            }
        ),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("The provided continue parameter is too old"));
}

#[tokio::test]
async fn bad_tokens_and_resource_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    seed(&store).await;
    let err = store
        .list(
            "pods",
            None,
            &ListOptions {
                continue_token: Some("not-a-token".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidContinue { .. }), "{err}");
    let token = store
        .list(
            "pods",
            None,
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .unwrap()
        .continue_token
        .unwrap();
    let err = store
        .list(
            "pods",
            None,
            &ListOptions {
                continue_token: Some(token),
                resource_version: Some(3),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err
        .to_string()
        .contains("specifying resource version is not allowed when using continue"));

    let err = store
        .list(
            "pods",
            None,
            &ListOptions {
                resource_version: Some(99),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::TooLargeResourceVersion {
            requested: 99,
            current: 5
        }
    ));
    // rv 0 and rv <= current: latest state.
    for rv in [0, 1, 5] {
        let page = store
            .list(
                "pods",
                None,
                &ListOptions {
                    resource_version: Some(rv),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((page.revision, page.items.len()), (5, 5));
    }
}

#[tokio::test]
async fn exact_resource_version_lists_the_past() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    seed(&store).await; // revisions 1..=5
    store
        .delete(&pod_key("a", "p1"), Preconditions::default())
        .await
        .unwrap(); // 6
    let exact = |rv| ListOptions {
        resource_version: Some(rv),
        resource_version_match: ResourceVersionMatch::Exact,
        ..Default::default()
    };
    let at2 = store.list("pods", None, &exact(2)).unwrap();
    assert_eq!(at2.revision, 2);
    assert_eq!(names(&at2), ["a/p1", "b/p2"]);
    let at6 = store.list("pods", None, &exact(6)).unwrap();
    assert_eq!(names(&at6), ["a-x/p0", "a/p3", "b/p1", "b/p2"]);
    store.compact(4).await.unwrap();
    assert_eq!(store.compacted_revision(), 4);
    let err = store.list("pods", None, &exact(3)).unwrap_err();
    assert!(matches!(
        err,
        StoreError::Gone {
            requested: 3,
            compacted: 4
        }
    ));
    assert_eq!(err.to_string(), "too old resource version: 3 (4)");
    assert_eq!(store.list("pods", None, &exact(4)).unwrap().items.len(), 4);
    let err = store.list("pods", None, &exact(7)).unwrap_err();
    assert!(matches!(err, StoreError::TooLargeResourceVersion { .. }));
}

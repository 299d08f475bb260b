//! Acceptance 4 of issue 2: every error class answers with the upstream status code, reason
//! and a message naming what is wrong, and leaves stored state unchanged.

use serde_json::{json, Value};
use skiff_apiserver::Identity;
use skiff_tests::https::{HttpsClient, Reply};
use skiff_tests::inproc::TestApi;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// The status code, reason and message of a `Status` reply.
fn status(reply: &Reply) -> (u16, String, String) {
    let v = reply.json();
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(
        v["code"], reply.status,
        "code field matches HTTP status: {v}"
    );
    (
        reply.status,
        v["reason"].as_str().unwrap_or_default().to_string(),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Everything stored, as (revision, list of pods) — compared before and after bad requests.
async fn snapshot(admin: &HttpsClient) -> (String, Value) {
    let list = admin.get(PODS).await.json();
    (
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        list["items"].clone(),
    )
}

async fn setup() -> (TestApi, HttpsClient, (String, Value)) {
    let server = TestApi::start().await;
    let admin = server.admin();
    let created = admin.post_json(PODS, &pod("keep")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let before = snapshot(&admin).await;
    (server, admin, before)
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let (server, admin, before) = setup().await;
    let json_ct = [("content-type", "application/json")];
    let reply = admin
        .request("POST", PODS, &json_ct, "{\"apiVersion\": \"v1\", ")
        .await;
    let (code, reason, message) = status(&reply);
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    assert!(
        message.contains("not valid JSON") && message.contains("line 1"),
        "{message}"
    );

    let yaml_ct = [("content-type", "application/yaml")];
    let reply = admin
        .request("POST", PODS, &yaml_ct, "kind: Pod\nmetadata: [unclosed\n")
        .await;
    let (code, _, message) = status(&reply);
    assert_eq!(code, 400);
    assert!(message.contains("not valid YAML"), "{message}");

    // Wrong JSON type for a field: upstream's decode error naming the field.
    let mut wrong = pod("typed");
    wrong["spec"]["containers"] = json!("busybox");
    let (code, _, message) = status(&admin.post_json(PODS, &wrong).await);
    assert_eq!(code, 400);
    assert!(
        message.contains("Pod in version \"v1\" cannot be handled as a Pod"),
        "{message}"
    );
    assert!(message.contains("containers"), "{message}");

    // Unknown field under fieldValidation=Strict (what kubectl sends).
    let mut unknown = pod("strict");
    unknown["spec"]["containerz"] = json!([]);
    let reply = admin
        .request(
            "POST",
            &format!("{PODS}?fieldValidation=Strict"),
            &json_ct,
            unknown.to_string(),
        )
        .await;
    let (code, _, message) = status(&reply);
    assert_eq!(code, 400);
    assert!(
        message.contains("strict decoding error: unknown field \"spec.containerz\""),
        "{message}"
    );

    // Body of another kind.
    let mut other = pod("x");
    other["kind"] = json!("Service");
    let (code, _, message) = status(&admin.post_json(PODS, &other).await);
    assert_eq!(code, 400);
    assert!(message.contains("kind in the data (Service)"), "{message}");

    // Malformed selector.
    let (code, _, message) = status(
        &admin
            .get(&format!("{PODS}?labelSelector=a%20in%20(b"))
            .await,
    );
    assert_eq!(code, 400);
    assert!(message.contains("labelSelector"), "{message}");

    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn no_certificate_is_401_and_foreign_identity_is_403() {
    let (server, admin, before) = setup().await;
    let anonymous = server.anonymous();
    let reply = anonymous.post_json(PODS, &pod("anon")).await;
    let (code, reason, _) = status(&reply);
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    assert_eq!(status(&anonymous.get("/api").await).0, 401);
    // Health and version are public, as upstream.
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    assert_eq!(anonymous.get("/version").await.json()["major"], "1");

    let bob = server.as_identity(&Identity::new("bob", ["developers"]));
    let (code, reason, message) = status(&bob.post_json(PODS, &pod("bob")).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "pods is forbidden: User \"bob\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let (code, _, message) = status(&bob.get(&format!("{PODS}/keep")).await);
    assert_eq!(code, 403);
    assert!(
        message.starts_with("pods \"keep\" is forbidden: User \"bob\" cannot get"),
        "{message}"
    );
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn terminating_namespaces_refuse_new_objects_with_403() {
    // No namespace controller runs here, so the namespace stays Terminating.
    let (server, admin, _) = setup().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    assert_eq!(admin.post_json("/api/v1/namespaces", &ns).await.status, 201);
    let reply = admin
        .request("DELETE", "/api/v1/namespaces/doomed", &[], "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"]["phase"], "Terminating");
    let (code, reason, message) = status(
        &admin
            .post_json("/api/v1/namespaces/doomed/pods", &pod("late"))
            .await,
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "unable to create new content in namespace doomed because it is being terminated"
    );
    let listed = admin.get("/api/v1/namespaces/doomed/pods").await.json();
    assert_eq!(listed["items"], json!([]), "nothing was created");
    let (code, _, message) = status(
        &admin
            .request("DELETE", "/api/v1/namespaces/default", &[], "")
            .await,
    );
    assert_eq!(code, 403);
    assert!(
        message.contains("this namespace may not be deleted"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_things_are_404_and_wrong_verbs_405() {
    let (server, admin, before) = setup().await;
    let (code, reason, message) = status(&admin.get(&format!("{PODS}/nope")).await);
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (404, "NotFound", "pods \"nope\" not found")
    );
    let (code, _, message) = status(
        &admin
            .post_json("/api/v1/namespaces/ghost/pods", &pod("p"))
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        (404, "namespaces \"ghost\" not found")
    );
    assert_eq!(status(&admin.get("/api/v1/widgets").await).0, 404);
    assert_eq!(status(&admin.get("/apis/apps/v2/deployments").await).0, 404);
    let reply = admin
        .request(
            "PUT",
            PODS,
            &[("content-type", "application/json")],
            pod("x").to_string(),
        )
        .await;
    let (code, reason, _) = status(&reply);
    assert_eq!((code, reason.as_str()), (405, "MethodNotAllowed"));
    let (code, _, _) = status(&admin.request("DELETE", "/api/v1/namespaces", &[], "").await);
    assert_eq!(code, 405, "namespaces have no deletecollection");
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn duplicates_and_stale_writes_are_409() {
    let (server, admin, before) = setup().await;
    let (code, reason, message) = status(&admin.post_json(PODS, &pod("keep")).await);
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (409, "AlreadyExists", "pods \"keep\" already exists")
    );

    let current = admin.get(&format!("{PODS}/keep")).await.json();
    let mut stale = current.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let (code, reason, message) = status(&admin.put_json(&format!("{PODS}/keep"), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        "Operation cannot be fulfilled on pods \"keep\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A delete with a wrong uid precondition.
    let reply = admin
        .request(
            "DELETE",
            &format!("{PODS}/keep"),
            &[("content-type", "application/json")],
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "nope"}})
                .to_string(),
        )
        .await;
    let (code, _, message) = status(&reply);
    assert_eq!(code, 409);
    assert!(
        message.contains("Precondition failed: UID in precondition: nope"),
        "{message}"
    );
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn compacted_revisions_are_410() {
    let (server, admin, _) = setup().await;
    admin.post_json(PODS, &pod("second")).await;
    let page = admin.get(&format!("{PODS}?limit=1")).await.json();
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("a continue token: two pods, limit 1")
        .to_string();
    admin.post_json(PODS, &pod("third")).await;
    server
        .store
        .compact(server.store.revision())
        .await
        .expect("compact");
    // A watch from a compacted revision: 200 with one ERROR event carrying a 410 Status.
    let reply = admin
        .get(&format!("{PODS}?watch=1&resourceVersion=1"))
        .await;
    assert_eq!(reply.status, 200);
    let event: Value =
        serde_json::from_str(reply.text().lines().next().expect("one event")).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    assert!(event["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version: 1 ("));
    // An exact list at a compacted revision.
    let (code, reason, _) = status(
        &admin
            .get(&format!(
                "{PODS}?resourceVersion=1&resourceVersionMatch=Exact"
            ))
            .await,
    );
    assert_eq!((code, reason.as_str()), (410, "Expired"));
    // A continue token whose revision was compacted away.
    let (code, _, message) = status(&admin.get(&format!("{PODS}?limit=1&continue={token}")).await);
    assert_eq!(code, 410);
    assert!(
        message.contains("continue parameter is too old"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let (server, admin, before) = setup().await;
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({"blob": "x".repeat(3 * 1024 * 1024 + 10)});
    let (code, reason, message) = status(&admin.post_json(PODS, &big).await);
    assert_eq!((code, reason.as_str()), (413, "RequestEntityTooLarge"));
    assert!(message.contains("limit is 3145728"), "{message}");
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn unknown_content_types_are_415() {
    let (server, admin, before) = setup().await;
    let reply = admin
        .request(
            "POST",
            PODS,
            &[("content-type", "text/plain")],
            pod("t").to_string(),
        )
        .await;
    let (code, reason, message) = status(&reply);
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(
        message.contains("text/plain") && message.contains("application/json"),
        "{message}"
    );
    let reply = admin
        .request(
            "PATCH",
            &format!("{PODS}/keep"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    let (code, _, message) = status(&reply);
    assert_eq!(code, 415);
    assert!(
        message.contains("application/strategic-merge-patch+json"),
        "{message}"
    );
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    // No Content-Type on a create is JSON, as upstream (tests/tests/wire_compat.rs).
    let reply = admin
        .request("POST", PODS, &[], pod("none").to_string())
        .await;
    assert_eq!(reply.status, 201, "no content type: {}", reply.text());
    server.stop().await;
}

#[tokio::test]
async fn invalid_objects_are_422_with_causes() {
    let (server, admin, before) = setup().await;
    let mut bad = pod("Bad_Name");
    bad["spec"]["containers"][0]["image"] = json!("");
    let reply = admin.post_json(PODS, &bad).await;
    let (code, reason, message) = status(&reply);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.starts_with("Pod \"Bad_Name\" is invalid: ["),
        "{message}"
    );
    assert!(
        message.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{message}"
    );
    assert!(
        message.contains("spec.containers[0].image: Required value"),
        "{message}"
    );
    let causes = reply.json()["details"]["causes"].clone();
    let fields: Vec<&str> = causes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"metadata.name") && fields.contains(&"spec.containers[0].image"),
        "{causes}"
    );

    // Immutable pod spec on update.
    let mut current = admin.get(&format!("{PODS}/keep")).await.json();
    current["spec"]["containers"][0]["name"] = json!("renamed");
    let (code, _, message) = status(&admin.put_json(&format!("{PODS}/keep"), &current).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("pod updates may not change fields other than"),
        "{message}"
    );

    // A patch producing an invalid object is refused the same way.
    let reply = admin
        .request(
            "PATCH",
            &format!("{PODS}/keep"),
            &[("content-type", "application/merge-patch+json")],
            json!({"metadata": {"labels": {"bad key!": "v"}}}).to_string(),
        )
        .await;
    let (code, _, message) = status(&reply);
    assert_eq!(code, 422);
    assert!(message.contains("metadata.labels"), "{message}");
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let (server, admin, before) = setup().await;
    let reply = admin
        .request(
            "POST",
            &format!("{PODS}?dryRun=All"),
            &[("content-type", "application/json")],
            pod("dry").to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.json()["spec"]["restartPolicy"],
        "Always",
        "defaults shown"
    );
    let reply = admin
        .request("DELETE", &format!("{PODS}/keep?dryRun=All"), &[], "")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    server.stop().await;
}

//! Config maps and secrets a node reads for its pods, through the API as that node (so the
//! node authorizer decides: only what pods bound to the node reference).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use skiff_link::proto::{ObjectKind, ObjectRef, ObjectResult};

use super::error::message;

/// Reads each reference; a missing object is a result without object and error.
pub(crate) async fn read(as_node: &kube::Client, refs: Vec<ObjectRef>) -> Vec<ObjectResult> {
    let mut results = Vec::with_capacity(refs.len());
    for reference in refs {
        let value = match reference.kind {
            ObjectKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(as_node.clone(), &reference.namespace);
                api.get_opt(&reference.name)
                    .await
                    .map(|o| o.and_then(|o| serde_json::to_value(o).ok()))
            }
            ObjectKind::Secret => {
                let api: Api<Secret> = Api::namespaced(as_node.clone(), &reference.namespace);
                api.get_opt(&reference.name)
                    .await
                    .map(|o| o.and_then(|o| serde_json::to_value(o).ok()))
            }
        };
        results.push(match value {
            Ok(object) => ObjectResult {
                reference,
                object,
                error: None,
            },
            Err(error) => ObjectResult {
                reference,
                object: None,
                error: Some(message(&error)),
            },
        });
    }
    results
}

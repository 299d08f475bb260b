//! Template hashes: the `pod-template-hash` of Deployments' ReplicaSets and the
//! `controller-revision-hash` of DaemonSet revisions.
//!
//! Upstream hashes the Go value of the template with FNV-32a and encodes the decimal number
//! with `rand.SafeEncodeString`. We hash the template's JSON (k8s-openapi serialises fields in
//! a fixed order and maps sorted), so the values differ from upstream's but have the same form
//! and the same properties: stable for one template, different for different templates, and
//! changed by the collision count.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Label holding a ReplicaSet's template hash.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Label holding a ControllerRevision's (and DaemonSet pod's) template hash.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Upstream `rand.SafeEncodeString`: maps each character onto an alphabet without vowels
/// (so no words) and without look-alike characters.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The hash of a pod template and collision count, as upstream `controller.ComputeHash`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&json, 0x811c_9dc5);
    if let Some(count) = collision_count {
        hash = fnv32a(&(count as u32).to_le_bytes(), hash);
    }
    safe_encode(&hash.to_string())
}

/// Whether two templates are equal apart from the `pod-template-hash` label (upstream
/// `EqualIgnoreHash`).
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        if let Some(m) = t.metadata.as_mut() {
            if m.labels.as_ref().is_some_and(|l| l.is_empty()) {
                m.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = template_hash(&template("a"), None);
        assert_eq!(a, template_hash(&template("a"), None));
        assert_ne!(a, template_hash(&template("b"), None));
        assert_ne!(a, template_hash(&template("a"), Some(1)));
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert!(!a.is_empty() && a.len() <= 10);
    }

    #[test]
    fn equality_ignores_the_hash_label() {
        let a = template("a");
        let mut b = template("a");
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "xyz".into());
        assert!(equal_ignoring_hash(&a, &b));
        assert!(!equal_ignoring_hash(&a, &template("b")));
    }
}

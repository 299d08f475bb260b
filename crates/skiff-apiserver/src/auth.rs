//! Authentication results and pluggable authorization.
//!
//! Authentication happens in the TLS accept loop: the verified client certificate becomes an
//! [`Identity`] (user = CN, groups = O) in the request's extensions. Requests without one are
//! answered 401, except the public health and version endpoints. Authorization asks an
//! [`Authorizer`] about every resource request.

use std::sync::Arc;

pub use skiff_pki::Identity;

/// What a request wants to do, as upstream's authorizer attributes.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// Who asks.
    pub identity: &'a Identity,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'a str,
    /// API group (`""` for core).
    pub api_group: &'a str,
    /// Resource plural.
    pub resource: &'a str,
    /// Subresource (`status`, `scale`, ...).
    pub subresource: Option<&'a str>,
    /// Namespace of the request, if any.
    pub namespace: Option<&'a str>,
    /// Object name, if any.
    pub name: Option<&'a str>,
}

/// The verdict of an [`Authorizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is refused; the text explains why (appended to the 403 message).
    Deny(String),
}

/// Decides whether an identity may perform a request. Node identities get a node authorizer
/// (a later issue); administrators are allowed everything.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides about one request.
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision;

    /// Checks the object a create, update or patch (of an authorized request) is about to
    /// store, as upstream's NodeRestriction admission does (a node may create only its own
    /// Node). `attributes.name` is the object's name, also for creates. Default: allow.
    fn admit(&self, attributes: &Attributes<'_>, object: &serde_json::Value) -> Decision {
        let _ = (attributes, object);
        Decision::Allow
    }

    /// Decides about a request for a non-resource path (`/metrics`), as upstream's
    /// `nonResourceURLs` rules. Discovery, OpenAPI, health and version paths are open to every
    /// authenticated identity and do not come here. Default: deny.
    fn authorize_path(&self, identity: &Identity, verb: &str, path: &str) -> Decision {
        let _ = (identity, verb, path);
        Decision::Deny(String::new())
    }
}

/// Allows every authenticated request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes<'_>) -> Decision {
        Decision::Allow
    }

    fn authorize_path(&self, _: &Identity, _: &str, _: &str) -> Decision {
        Decision::Allow
    }
}

/// Allows members of any of the given groups to do everything, and refuses everyone else.
#[derive(Debug, Clone)]
pub struct GroupAuthorizer {
    groups: Vec<String>,
}

impl GroupAuthorizer {
    /// Allows the given groups.
    pub fn new(groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        GroupAuthorizer {
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    /// Allows `system:masters` (the admin certificate's group).
    pub fn masters() -> Self {
        GroupAuthorizer::new([skiff_pki::ADMIN_GROUP])
    }
}

impl GroupAuthorizer {
    fn decide(&self, identity: &Identity) -> Decision {
        if self.groups.iter().any(|g| identity.in_group(g)) {
            Decision::Allow
        } else {
            Decision::Deny(String::new())
        }
    }
}

impl Authorizer for GroupAuthorizer {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        self.decide(attributes.identity)
    }

    fn authorize_path(&self, identity: &Identity, _: &str, _: &str) -> Decision {
        self.decide(identity)
    }
}

/// Asks several authorizers in turn: the first `Allow` wins; if none allows, the request is
/// denied with the reasons given.
#[derive(Clone, Default)]
pub struct UnionAuthorizer {
    authorizers: Vec<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for UnionAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnionAuthorizer")
            .field("authorizers", &self.authorizers.len())
            .finish()
    }
}

impl UnionAuthorizer {
    /// Combines `authorizers`.
    pub fn new(authorizers: Vec<Arc<dyn Authorizer>>) -> Self {
        UnionAuthorizer { authorizers }
    }
}

impl Authorizer for UnionAuthorizer {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        let mut reasons = Vec::new();
        for authorizer in &self.authorizers {
            match authorizer.authorize(attributes) {
                Decision::Allow => return Decision::Allow,
                Decision::Deny(reason) if !reason.is_empty() => reasons.push(reason),
                Decision::Deny(_) => {}
            }
        }
        Decision::Deny(reasons.join(", "))
    }

    fn authorize_path(&self, identity: &Identity, verb: &str, path: &str) -> Decision {
        let mut reasons = Vec::new();
        for authorizer in &self.authorizers {
            match authorizer.authorize_path(identity, verb, path) {
                Decision::Allow => return Decision::Allow,
                Decision::Deny(reason) if !reason.is_empty() => reasons.push(reason),
                Decision::Deny(_) => {}
            }
        }
        Decision::Deny(reasons.join(", "))
    }

    /// The authorizer that allowed the request decides.
    fn admit(&self, attributes: &Attributes<'_>, object: &serde_json::Value) -> Decision {
        for authorizer in &self.authorizers {
            if authorizer.authorize(attributes) == Decision::Allow {
                return authorizer.admit(attributes, object);
            }
        }
        Decision::Deny(String::new())
    }
}

/// Upstream's 403 message for a non-resource path: `forbidden: User "bob" cannot get path
/// "/metrics"`.
pub fn forbidden_path_message(identity: &Identity, verb: &str, path: &str, reason: &str) -> String {
    let mut message = format!(
        "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
        identity.user
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

/// Upstream's 403 message: `pods "web" is forbidden: User "bob" cannot get resource "pods" in
/// API group "" in the namespace "default"`.
pub fn forbidden_message(attributes: &Attributes<'_>, reason: &str) -> String {
    let resource = match attributes.subresource {
        Some(sub) => format!("{}/{sub}", attributes.resource),
        None => attributes.resource.to_string(),
    };
    let target = match (attributes.name, attributes.api_group) {
        (Some(name), "") => format!("{} \"{name}\"", attributes.resource),
        (Some(name), group) => format!("{}.{group} \"{name}\"", attributes.resource),
        (None, "") => attributes.resource.to_string(),
        (None, group) => format!("{}.{group}", attributes.resource),
    };
    let scope = match attributes.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let mut message = format!(
        "{target} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        attributes.identity.user, attributes.verb, attributes.api_group
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

//! Joins: check the bootstrap token, protect the node name with its node password, sign the
//! node's certificate request.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::Api;
use skiff_link::proto::{JoinRequest, RefusalCode};
use skiff_link::quic::{JoinGrant, Refusal};
use skiff_pki::{BootstrapToken, TokenError, NODE_PASSWORD_SECRET_SUFFIX, TOKEN_NAMESPACE};

use super::error::{message, status_code};
use super::{certificates, Shared};

/// Type of the Secrets holding node password hashes.
pub(super) const NODE_PASSWORD_SECRET_TYPE: &str = "skiff.dev/node-password";

/// Handles one join request.
pub(crate) async fn join(
    shared: &Shared,
    request: JoinRequest,
    remote: SocketAddr,
) -> Result<JoinGrant, Refusal> {
    let limiter = &shared.join_limiter;
    if !limiter.allows(remote.ip()) {
        return Err(Refusal::new(
            RefusalCode::Forbidden,
            format!(
                "too many join attempts from {}; try again in {} s",
                remote.ip(),
                limiter.retry_after(remote.ip()).as_secs().max(1)
            ),
        ));
    }
    let result = checked_join(shared, request, remote).await;
    if matches!(&result, Err(refusal) if !matches!(refusal.code, RefusalCode::Internal)) {
        limiter.charge(remote.ip());
    }
    result
}

async fn checked_join(
    shared: &Shared,
    request: JoinRequest,
    remote: SocketAddr,
) -> Result<JoinGrant, Refusal> {
    let name = request.node_name.as_str();
    if let Err(problem) = check_node_name(name) {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            format!("invalid node name {name:?}: {problem}"),
        ));
    }
    check_token(shared, &request).await?;
    check_node_password(shared, name, &request.node_password).await?;
    let certificate_pem =
        certificates::issue(shared, name, &request.csr_pem, &request.token_id).await?;
    tracing::info!(node = %name, %remote, token = %request.token_id, "issued a node certificate");
    Ok(JoinGrant {
        certificate_pem,
        ca_pem: shared.ca_pem.clone(),
    })
}

/// Kubernetes node names are DNS-1123 subdomains.
pub(crate) fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(
                "a node name must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into(),
            );
        }
    }
    Ok(())
}

/// The one refusal for unknown, revoked, malformed, expired and wrong tokens: which of them it
/// was would tell a guesser which token ids exist (the server logs the reason).
pub const INVALID_TOKEN_MESSAGE: &str =
    "the join token is not valid (unknown, revoked, expired or a wrong secret); create one with `skiff token create` on the server";

async fn check_token(shared: &Shared, request: &JoinRequest) -> Result<(), Refusal> {
    let id = request.token_id.as_str();
    let invalid = |why: &dyn std::fmt::Display| {
        tracing::info!(token = %id, node = %request.node_name, reason = %why, "join token refused");
        Refusal::new(RefusalCode::InvalidToken, INVALID_TOKEN_MESSAGE)
    };
    if id.len() != 6
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(invalid(&"malformed token id"));
    }
    let secrets: Api<Secret> = Api::namespaced(shared.admin.clone(), TOKEN_NAMESPACE);
    let secret = match secrets.get_opt(&format!("bootstrap-token-{id}")).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(invalid(&TokenError::Unknown { id: id.to_string() })),
        Err(error) => {
            return Err(Refusal::new(
                RefusalCode::Internal,
                format!("cannot read the join token: {}", message(&error)),
            ))
        }
    };
    let value = serde_json::to_value(&secret).unwrap_or_default();
    let token = BootstrapToken::from_secret(&value).map_err(|e| invalid(&e))?;
    token
        .check(&request.token_secret, jiff::Timestamp::now())
        .map_err(|e| invalid(&e))
}

/// The first join of a name records the node's password hash; later joins must match it.
async fn check_node_password(shared: &Shared, name: &str, password: &str) -> Result<(), Refusal> {
    if password.len() < 16 {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            "the node password is missing or too short",
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(shared.admin.clone(), TOKEN_NAMESPACE);
    let secret_name = format!("{name}{NODE_PASSWORD_SECRET_SUFFIX}");
    let internal = |error: kube::Error| {
        Refusal::new(
            RefusalCode::Internal,
            format!(
                "cannot check the node password of {name}: {}",
                message(&error)
            ),
        )
    };
    for _attempt in 0..2 {
        match secrets.get_opt(&secret_name).await.map_err(internal)? {
            Some(existing) => {
                let stored = existing
                    .data
                    .as_ref()
                    .and_then(|d| d.get("hash"))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default();
                if skiff_pki::verify_node_password(password, &stored) {
                    return Ok(());
                }
                return Err(Refusal::new(
                    RefusalCode::NameTaken,
                    format!(
                        "node name {name} is already taken by another node (its node password differs); \
                         choose another --node-name, or if this machine lost its DIR/agent/node-password, \
                         delete the Secret {TOKEN_NAMESPACE}/{secret_name}"
                    ),
                ));
            }
            None => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(secret_name.clone()),
                        namespace: Some(TOKEN_NAMESPACE.to_string()),
                        ..Default::default()
                    },
                    type_: Some(NODE_PASSWORD_SECRET_TYPE.to_string()),
                    data: Some(
                        [(
                            "hash".to_string(),
                            ByteString(skiff_pki::hash_node_password(password).into_bytes()),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => return Ok(()),
                    // Another join of the same name won the race: compare with its password.
                    Err(error) if status_code(&error) == Some(409) => continue,
                    Err(error) => return Err(internal(error)),
                }
            }
        }
    }
    Err(Refusal::new(
        RefusalCode::Internal,
        format!("cannot record the node password of {name}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::check_node_name;

    #[test]
    fn node_names_follow_dns_1123() {
        assert!(check_node_name("edge-1.lab").is_ok());
        for bad in ["", "Edge", "-a", "a-", "a..b", "a_b", &"x".repeat(254)] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }
}

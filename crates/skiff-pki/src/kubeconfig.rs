//! kubeconfig files that `kubectl` and client libraries use as they are.

use base64::Engine;

use crate::CertKeyPair;

/// What goes into a single-cluster, single-user kubeconfig.
#[derive(Debug)]
pub struct KubeconfigParams<'a> {
    /// Name of the cluster and of the context.
    pub cluster_name: &'a str,
    /// Name of the user entry.
    pub user_name: &'a str,
    /// API URL, `https://127.0.0.1:6443`.
    pub server_url: &'a str,
    /// The cluster CA certificate, PEM.
    pub ca_pem: &'a str,
    /// The client certificate and key.
    pub client: &'a CertKeyPair,
}

/// Renders a kubeconfig with the CA, client certificate and key embedded as base64 data.
pub fn kubeconfig_yaml(params: &KubeconfigParams<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    // Every value is either base64 or quoted JSON-style, so the YAML needs no further escaping.
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: {cluster}\n  \
           context:\n    \
             cluster: {cluster}\n    \
             user: {user}\n\
         current-context: {cluster}\n\
         preferences: {{}}\n",
        cluster = quote(params.cluster_name),
        user = quote(params.user_name),
        server = quote(params.server_url),
        ca = b64(params.ca_pem),
        cert = b64(&params.client.cert_pem),
        key = b64(&params.client.key_pem),
    )
}

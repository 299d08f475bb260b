//! Errors of the node link's server side.

use std::path::PathBuf;

/// What can stop the node link from starting, or fail a token command.
#[derive(Debug, thiserror::Error)]
pub enum NodeLinkError {
    /// Certificates could not be used.
    #[error(transparent)]
    Pki(#[from] skiff_pki::PkiError),
    /// The endpoint could not start.
    #[error("node link: {0}")]
    Link(#[from] skiff_link::quic::LinkError),
    /// A token is malformed.
    #[error(transparent)]
    Token(#[from] skiff_pki::TokenError),
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The API refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API's answer.
        source: kube::Error,
    },
    /// The kubeconfig could not be used.
    #[error("cannot use the kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Bad input to a token command.
    #[error("{0}")]
    Invalid(String),
}

impl NodeLinkError {
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| NodeLinkError::Api { what, source }
    }
}

/// The HTTP status of a kube API error, if it is one.
pub(crate) fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The API's message for an error (the `Status` message when there is one).
pub(crate) fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

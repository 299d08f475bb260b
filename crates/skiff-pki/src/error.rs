//! Errors of the PKI.

use std::path::PathBuf;

/// Everything that can go wrong creating, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// rcgen refused to generate or sign something.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// The key or certificate being generated.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{what} is not valid PEM: {detail}")]
    InvalidPem {
        /// What was being read (usually a file path and its role).
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A DER certificate could not be parsed.
    #[error("invalid X.509 certificate: {0}")]
    InvalidCertificate(String),
    /// A certificate signing request could not be parsed or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(rcgen::Error),
    /// An identity that cannot be put into a certificate (empty user name, ...).
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// A name given for the serving certificate is not a valid DNS name.
    #[error("invalid DNS name {name:?} for the serving certificate")]
    InvalidDnsName {
        /// The rejected name.
        name: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

//! Cluster CA, certificates, join tokens and rustls configurations.

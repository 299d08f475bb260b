//! The Kubernetes-compatible HTTPS API: discovery, OpenAPI, CRUD, patch, watch, tables, authentication and authorization.

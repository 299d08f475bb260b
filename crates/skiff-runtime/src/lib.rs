//! Pods on libcontainer: sandbox namespaces, OCI runtime specs from PodSpecs, cgroups, lifecycle, logs, exec.

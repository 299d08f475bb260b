//! The control plane the controller benchmarks drive: in-process (store, API server,
//! scheduler and controllers, as `skiff server` runs them) or a running server.

use std::path::Path;

use kube::Client;

/// An in-process control plane; dropping it stops the controllers and closes the store.
pub(crate) struct InProcess {
    pub(crate) running: skiff_controllers::Running,
    pub(crate) store: skiff_store::Store,
    _dir: tempfile::TempDir,
}

/// Opens a store in a fresh directory under `parent` (named after `prefix`), bootstraps the
/// API server on it and starts the control loops with `start`, each under its upstream
/// identity. Returns an admin client and the running plane.
pub(crate) async fn in_process(
    parent: &Path,
    prefix: &str,
    store_options: skiff_store::StoreOptions,
    start: impl FnOnce(skiff_controllers::Clients) -> skiff_controllers::Running,
) -> (Client, InProcess) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .expect("temp dir");
    let store = skiff_store::Store::open(&dir.path().join("state.redb"), store_options)
        .expect("open store");
    let api = skiff_apiserver::ApiServer::new(store.clone(), skiff_apiserver::ApiConfig::default());
    api.bootstrap().await.expect("bootstrap");
    let client = |user: &str| {
        Client::new(
            api.service(skiff_apiserver::Identity::new(user, ["system:masters"])),
            "default",
        )
    };
    let running = start(skiff_controllers::Clients {
        scheduler: client("system:kube-scheduler"),
        controller_manager: client("system:kube-controller-manager"),
    });
    (
        client("system:admin"),
        InProcess {
            running,
            store,
            _dir: dir,
        },
    )
}

/// A client for the running server a kubeconfig points at.
pub(crate) async fn remote(kubeconfig: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
    Client::try_from(config).expect("kube client")
}

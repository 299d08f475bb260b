//! An API server inside the test process, served over real HTTPS on a loopback port, with a
//! store the test can reach directly (to compact it, or to check what is stored).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use skiff_apiserver::{ApiConfig, ApiServer, Identity};
use skiff_pki::{CertKeyPair, ServerPki, ServingNames};
use skiff_store::{Store, StoreOptions};
use tokio::sync::oneshot;

use crate::https::HttpsClient;

/// A running in-process API server.
#[derive(Debug)]
pub struct TestApi {
    /// Data directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The store behind the API.
    pub store: Store,
    /// The API server.
    pub api: ApiServer,
    /// Certificates.
    pub pki: ServerPki,
    /// HTTPS address.
    pub addr: SocketAddr,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApi {
    /// Starts with default store options.
    pub async fn start() -> TestApi {
        TestApi::start_with(StoreOptions::default()).await
    }

    /// Starts with `options` (e.g. a short bookmark interval).
    pub async fn start_with(options: StoreOptions) -> TestApi {
        TestApi::start_configured(options, ApiConfig::default()).await
    }

    /// Starts with store `options` and API `config` (e.g. short connection limits).
    pub async fn start_configured(options: StoreOptions, config: ApiConfig) -> TestApi {
        crate::install_crypto();
        let dir = crate::temp_dir("api");
        let pki =
            ServerPki::load_or_create(&dir.path().join("tls"), &ServingNames::new("localhost", []))
                .expect("PKI");
        let store = Store::open(&dir.path().join("state.redb"), options).expect("open store");
        let api = ApiServer::new(store.clone(), config);
        api.bootstrap().await.expect("bootstrap");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let kubeconfig = dir.path().join("admin.kubeconfig");
        pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{addr}"))
            .expect("kubeconfig");
        let tls = skiff_pki::server_config(pki.ca.cert_pem(), &pki.serving, &[b"h2", b"http/1.1"])
            .expect("server TLS");
        let (tx, rx) = oneshot::channel::<()>();
        let server = api.clone();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(listener, Arc::new(tls), async {
                    let _ = rx.await;
                })
                .await;
        });
        TestApi {
            dir,
            store,
            api,
            pki,
            addr,
            kubeconfig,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A `kube::Client` from the admin kubeconfig (over HTTPS, as any client would).
    pub async fn kube(&self) -> kube::Client {
        kube_client(&self.kubeconfig).await
    }

    /// A raw HTTPS client authenticating as the admin.
    pub fn admin(&self) -> HttpsClient {
        HttpsClient::new(self.addr, self.pki.ca.cert_pem(), Some(&self.pki.admin))
    }

    /// A raw HTTPS client without a client certificate.
    pub fn anonymous(&self) -> HttpsClient {
        HttpsClient::new(self.addr, self.pki.ca.cert_pem(), None)
    }

    /// A raw HTTPS client authenticating as `identity` (certificate from the cluster CA).
    pub fn as_identity(&self, identity: &Identity) -> HttpsClient {
        let cert: CertKeyPair = self.pki.ca.issue_client(identity).expect("client cert");
        HttpsClient::new(self.addr, self.pki.ca.cert_pem(), Some(&cert))
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A `kube::Client` built from a kubeconfig file.
pub async fn kube_client(kubeconfig: &std::path::Path) -> kube::Client {
    crate::install_crypto();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

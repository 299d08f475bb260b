//! Creating a pod: its sandbox (record, cgroup, namespaces, network, /etc files, volumes),
//! then its worker.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use crate::context::{Inner, PodEvent};
use crate::error::{Result, RuntimeError};
use crate::inputs::PodInputs;
use crate::pod_checks::validate_pod;
use crate::pod_teardown::destroy_pod;
use crate::runtime::Runtime;
use crate::sandbox::NamespaceRequest;
use crate::spec::fieldref::PodFacts;
use crate::spec::resources::pod_cgroup_resources;
use crate::state::{ContainerRecord, PodPaths, PodRecord, SandboxRecord};
use crate::{dns, sandbox, volumes};

/// Creates the sandbox of a pod (record, cgroup, namespaces, network, files, volumes).
fn create_pod(inner: &Inner, pod: &Pod, inputs: &PodInputs, paths: &PodPaths) -> Result<PodRecord> {
    let mut phases = crate::timing::Phases::new("sandbox");
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| RuntimeError::io("create", &paths.dir, e))?;
    }
    let cluster_dns = inner.cluster_dns();
    let (hostname, _) = dns::hostname(pod, &cluster_dns.domain);
    let mut record = PodRecord {
        pod: pod.clone(),
        images: inputs.images.clone(),
        created_at: Timestamp::now(),
        start_time: None,
        pod_ips: Vec::new(),
        host_ips: inputs.node.host_ips.clone(),
        sandbox: SandboxRecord {
            hostname: hostname.clone(),
            ..Default::default()
        },
        cgroup: inner.pod_cgroup(&uid),
        containers: pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| (c.name.clone(), ContainerRecord::default()))
            .collect(),
        terminating: None,
        terminal: false,
        removing: false,
        failed: false,
    };
    // Saved first, so an interrupted creation can be undone after a restart.
    record.save(paths)?;
    phases.mark("record");

    let resources = pod_cgroup_resources(pod, inner.config.pod_pids_limit)?;
    crate::cgroups::create_pod(&inner.cgroups, &record.cgroup, &resources)?;
    phases.mark("cgroup");

    record.sandbox.namespaces = sandbox::create_namespaces(
        &paths.dir,
        &hostname,
        NamespaceRequest {
            net: !host_network,
            ipc: !host_ipc,
            uts: !host_network,
        },
    )?;
    phases.mark("namespaces");
    if !host_ipc {
        record.sandbox.shm = Some(sandbox::create_shm(&paths.dir, inner.config.shm_size)?);
    }
    record.save(paths)?;
    phases.mark("shm");

    if let Some(netns) = record.sandbox.namespaces.net.clone() {
        record.sandbox.network_ready = true;
        record.save(paths)?;
        // We run on a blocking thread of the tokio runtime: wait for the async setup here.
        record.pod_ips = tokio::runtime::Handle::current()
            .block_on(inner.network.setup(pod, &netns))
            .map_err(|message| RuntimeError::Network {
                pod: uid.clone(),
                message,
            })?;
    } else {
        record.pod_ips = record.host_ips.clone();
    }

    phases.mark("network");
    // /etc files.
    let etc = paths.dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| RuntimeError::io("create", &etc, e))?;
    let hosts = if host_network {
        dns::host_network_hosts_file(pod)
    } else {
        dns::hosts_file(pod, &record.pod_ips, &cluster_dns.domain)
    };
    crate::fsutil::write_atomic(&paths.hosts(), hosts.as_bytes(), 0o644)?;
    let resolv = dns::resolv_conf(pod, &cluster_dns)?;
    crate::fsutil::write_atomic(&paths.resolv(), resolv.as_bytes(), 0o644)?;
    let node_hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = if host_network {
        node_hostname
    } else {
        hostname
    };
    crate::fsutil::write_atomic(&paths.hostname(), format!("{shown}\n").as_bytes(), 0o644)?;

    // Volumes.
    let mut node = inputs.node.clone();
    if node.host_ips.is_empty() {
        node.host_ips = record.host_ips.clone();
    }
    let facts = PodFacts {
        node: Some(&node),
        pod_ips: &record.pod_ips,
    };
    volumes::prepare(&volumes::VolumeContext {
        pod,
        inputs,
        facts: &facts,
        root: &paths.volumes(),
        pod_memory_limit: resources.memory_limit,
    })?;

    phases.mark("files+volumes");
    record.start_time = Some(Timestamp::now());
    record.save(paths)?;
    phases.mark("save");
    phases.log(&uid);
    Ok(record)
}

impl Runtime {
    /// Runs a pod: validates it, creates its sandbox (cgroup, namespaces, network, /etc files,
    /// volumes) and returns; its containers are then started in the background (init
    /// containers first). Errors leave nothing behind.
    pub async fn run_pod(&self, pod: Pod, inputs: PodInputs) -> Result<()> {
        let uid = validate_pod(&pod, &inputs)?;
        let paths = self.inner().paths(&uid);
        {
            let pods = self.inner().pods.lock().unwrap_or_else(|p| p.into_inner());
            if pods.contains_key(&uid) || paths.dir.exists() {
                return Err(RuntimeError::PodExists(uid));
            }
        }
        let inner = Arc::clone(self.inner());
        let (p, i, pa) = (pod.clone(), inputs.clone(), paths.clone());
        let created = tokio::task::spawn_blocking(move || {
            let r = create_pod(&inner, &p, &i, &pa);
            if r.is_err() {
                if let Err(e) = destroy_pod(&inner, &pa, None) {
                    tracing::warn!(error = %e, "cleanup after a failed pod creation");
                }
            }
            r
        })
        .await
        .map_err(|e| RuntimeError::Container {
            container: "sandbox".into(),
            message: format!("task failed: {e}"),
        })??;
        tracing::info!(pod = %uid, name = ?pod.metadata.name, "pod sandbox ready");
        let (tx, rx) = mpsc::unbounded_channel();
        self.spawn_worker(uid.clone(), created, inputs, HashMap::new(), tx, rx);
        let _ = self.inner().events.send(PodEvent::Changed { uid });
        Ok(())
    }
}

//! The pod's `/etc/resolv.conf` (dnsPolicy, dnsConfig, cluster DNS) and `/etc/hosts`
//! (kubelet's managed hosts file with hostAliases), generated per pod.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::error::{Result, RuntimeError};

/// Upstream limits.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// Cluster DNS settings of the node.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    /// Cluster DNS server addresses (kubelet `--cluster-dns`); empty = none.
    pub nameservers: Vec<String>,
    /// Cluster domain (kubelet `--cluster-domain`).
    pub domain: String,
    /// The host resolver file used for `dnsPolicy: Default` and the host search path.
    pub host_resolv_conf: std::path::PathBuf,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            nameservers: Vec::new(),
            domain: "cluster.local".into(),
            host_resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

/// A parsed resolver configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolv {
    /// nameserver lines.
    pub nameservers: Vec<String>,
    /// search domains.
    pub searches: Vec<String>,
    /// options (`ndots:5`, `edns0`).
    pub options: Vec<String>,
}

impl Resolv {
    /// Parses resolv.conf text.
    pub fn parse(text: &str) -> Resolv {
        let mut r = Resolv::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    r.searches = words.map(str::to_owned).collect();
                }
                Some("options") => r.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        r
    }

    /// Renders resolv.conf text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str("search ");
            out.push_str(&self.searches.join(" "));
            out.push('\n');
        }
        for ns in &self.nameservers {
            out.push_str("nameserver ");
            out.push_str(ns);
            out.push('\n');
        }
        if !self.options.is_empty() {
            out.push_str("options ");
            out.push_str(&self.options.join(" "));
            out.push('\n');
        }
        out
    }
}

fn host_resolv(path: &Path) -> Resolv {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut r = Resolv::parse(&text);
    // A loopback stub (systemd-resolved) is unreachable from a pod's network namespace.
    if r.nameservers.iter().all(|n| n.starts_with("127.")) && !r.nameservers.is_empty() {
        if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            let u = Resolv::parse(&upstream);
            if !u.nameservers.is_empty() {
                r.nameservers = u.nameservers;
            }
        }
    }
    r
}

fn merge_option(options: &mut Vec<String>, opt: String) {
    let name = opt.split(':').next().unwrap_or("").to_owned();
    if let Some(existing) = options
        .iter_mut()
        .find(|o| o.split(':').next() == Some(name.as_str()))
    {
        *existing = opt;
    } else {
        options.push(opt);
    }
}

/// The resolv.conf of `pod` per its dnsPolicy and dnsConfig.
pub fn resolv_conf(pod: &Pod, cluster: &ClusterDns) -> Result<String> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut policy = spec
        .and_then(|s| s.dns_policy.clone())
        .unwrap_or_else(|| "ClusterFirst".into());
    if policy == "ClusterFirst" && host_network {
        policy = "Default".into();
    }
    if (policy == "ClusterFirst" || policy == "ClusterFirstWithHostNet")
        && cluster.nameservers.is_empty()
    {
        // No cluster DNS configured: the kubelet falls back to the node's resolver.
        policy = "Default".into();
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut r = match policy.as_str() {
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            let host = host_resolv(&cluster.host_resolv_conf);
            let d = &cluster.domain;
            let mut searches = vec![
                format!("{namespace}.svc.{d}"),
                format!("svc.{d}"),
                d.clone(),
            ];
            searches.extend(host.searches);
            Resolv {
                nameservers: cluster.nameservers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        "Default" => host_resolv(&cluster.host_resolv_conf),
        "None" => Resolv::default(),
        other => {
            return Err(RuntimeError::invalid(
                "spec.dnsPolicy",
                format!("unknown policy {other:?}"),
            ));
        }
    };
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        for ns in cfg.nameservers.iter().flatten() {
            if !r.nameservers.contains(ns) {
                r.nameservers.push(ns.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            if !opt.is_empty() {
                merge_option(&mut r.options, opt);
            }
        }
    } else if policy == "None" {
        return Err(RuntimeError::invalid(
            "spec.dnsConfig",
            "required when dnsPolicy is None",
        ));
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.dedup();
    r.searches.truncate(MAX_SEARCHES);
    Ok(r.render())
}

/// The pod's hostname (spec.hostname or the pod name) and, with a subdomain, its FQDN.
pub fn hostname(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    // Hostnames are limited to 63 characters (upstream truncates the pod name).
    let name: String = name
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned();
    let fqdn = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            format!("{name}.{sub}.{ns}.svc.{cluster_domain}")
        });
    (name, fqdn)
}

/// kubelet's managed /etc/hosts for a pod with its own network namespace.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let (name, fqdn) = hostname(pod, cluster_domain);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match &fqdn {
            Some(f) => out.push_str(&format!("{ip}\t{f}\t{name}\n")),
            None => out.push_str(&format!("{ip}\t{name}\n")),
        }
    }
    append_host_aliases(pod, &mut out);
    out
}

/// The node's hosts file plus the pod's hostAliases, for host-network pods.
pub fn host_network_hosts_file(pod: &Pod) -> String {
    let mut out = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    append_host_aliases(pod, &mut out);
    out
}

fn append_host_aliases(pod: &Pod, out: &mut String) {
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn pod(policy: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web-0".into());
        p.metadata.namespace = Some("shop".into());
        p.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_owned),
            ..Default::default()
        });
        p
    }

    fn cluster(dir: &Path) -> ClusterDns {
        let host = dir.join("resolv.conf");
        std::fs::write(&host, "nameserver 192.168.1.1\nsearch lan\noptions edns0\n").unwrap();
        ClusterDns {
            nameservers: vec!["10.43.0.10".into()],
            domain: "cluster.local".into(),
            host_resolv_conf: host,
        }
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_search_path() {
        let dir = tempfile::tempdir().unwrap();
        let text = resolv_conf(&pod(None), &cluster(dir.path())).unwrap();
        assert_eq!(
            text,
            "search shop.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_policy_copies_the_host_and_dns_config_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pod(Some("Default"));
        p.spec.as_mut().unwrap().dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["extra.example".into()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            }]),
        });
        let text = resolv_conf(&p, &cluster(dir.path())).unwrap();
        assert_eq!(
            text,
            "search lan extra.example\nnameserver 192.168.1.1\nnameserver 1.1.1.1\noptions edns0 ndots:2\n"
        );
        let none = resolv_conf(&pod(Some("None")), &cluster(dir.path())).unwrap_err();
        assert!(none.to_string().contains("spec.dnsConfig"));
        assert!(resolv_conf(&pod(Some("Bogus")), &cluster(dir.path())).is_err());
    }

    #[test]
    fn hosts_file_has_pod_ip_fqdn_and_aliases() {
        let mut p = pod(None);
        let spec = p.spec.as_mut().unwrap();
        spec.subdomain = Some("db".into());
        spec.host_aliases = Some(vec![HostAlias {
            ip: "10.0.0.9".into(),
            hostnames: Some(vec!["cache".into(), "cache.local".into()]),
        }]);
        let text = hosts_file(&p, &["10.42.0.5".into()], "cluster.local");
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(
            text.contains("10.42.0.5\tweb-0.db.shop.svc.cluster.local\tweb-0\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# Entries added by HostAliases.\n10.0.0.9\tcache\tcache.local\n"),
            "{text}"
        );
    }
}

//! The cluster zone: every name the Services define, built once per update into a map from
//! owner name to records, so a query is one hash lookup (no walk over the Services).
//!
//! The names and records follow CoreDNS's `kubernetes` plugin (and the Kubernetes DNS
//! specification): `<svc>.<ns>.svc.<domain>` A/AAAA for the cluster IPs (for a headless
//! Service, the ready endpoints' addresses), `<endpoint>.<svc>.<ns>.svc.<domain>` for a headless
//! Service's endpoints (its hostname, else its address with dashes), SRV at
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for named ports and at the Service name for all
//! ports, CNAME for ExternalName, PTR for cluster IPs and headless endpoint addresses, pod names
//! `a-b-c-d.<ns>.pod.<domain>` ("pods insecure": the address is read from the name), the zone's
//! SOA and NS at the apex, and `dns-version.<domain>` TXT.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use skiff_link_proto::proto::service::{ServiceSummary, ServiceType};

/// TTL of every record the zone answers, and the SOA minimum (CoreDNS's default `ttl 5`).
pub const ZONE_TTL: u32 = 5;

/// The schema version `dns-version.<domain>` answers (Kubernetes DNS specification).
const SCHEMA_VERSION: &str = "1.1.0";

/// What the zone says about one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The name has records of the asked type: `answers`, plus `additionals` (addresses of
    /// SRV targets).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name is an alias: the CNAME record and its target, to follow for the asked type.
    Alias { cname: Box<Record>, target: Name },
    /// The name exists but has no records of the asked type (NOERROR, SOA in authority).
    NoData,
    /// The name is under the cluster domain and does not exist (NXDOMAIN, SOA in authority).
    NxDomain,
    /// Not the cluster's to answer: forward it.
    NotOurs,
}

/// One immutable snapshot of the cluster zone.
#[derive(Debug)]
pub(crate) struct Zone {
    /// The cluster domain, lower case, fully qualified.
    domain: Name,
    /// Records by owner name (fully qualified; `Name` hashes and compares without case). Empty
    /// entries are the empty non-terminals (`svc.<domain>`, `<ns>.svc.<domain>`, ...): they
    /// exist, so they answer NODATA rather than NXDOMAIN.
    nodes: HashMap<Name, Vec<Record>>,
    /// The names pointing at each cluster IP or headless endpoint address (PTR).
    reverse: HashMap<IpAddr, Vec<Name>>,
    soa: Record,
}

impl Zone {
    /// Builds the zone of `domain` from the Services. A Service whose names are not valid DNS
    /// names, or an address that does not parse, is skipped (logged at debug): one odd object
    /// must not cost the others their records.
    pub(crate) fn build(domain: &Name, ns_addrs: &[IpAddr], services: &[ServiceSummary]) -> Zone {
        let domain = domain.to_lowercase();
        let mut zone = Zone {
            soa: soa_record(&domain, serial_now()),
            domain: domain.clone(),
            nodes: HashMap::new(),
            reverse: HashMap::new(),
        };
        zone.add(zone.soa.clone());
        let ns_name = name_under(&["ns", "dns"], &domain);
        if let Some(ns_name) = &ns_name {
            zone.add(Record::from_rdata(
                domain.clone(),
                ZONE_TTL,
                RData::NS(NS(ns_name.clone())),
            ));
            for ip in ns_addrs {
                zone.add(address_record(ns_name.clone(), *ip));
            }
        }
        if let Some(name) = name_under(&["dns-version"], &domain) {
            zone.add(Record::from_rdata(
                name,
                ZONE_TTL,
                RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
            ));
        }
        for service in services {
            if !zone.add_service(service) {
                tracing::debug!(service = %service.key, "cluster DNS: service skipped (not a valid DNS name)");
            }
        }
        zone
    }

    /// Adds one Service's records; false when its names are not valid.
    fn add_service(&mut self, service: &ServiceSummary) -> bool {
        let Some(svc_name) = name_under(
            &[&service.key.name, &service.key.namespace, "svc"],
            &self.domain,
        ) else {
            return false;
        };
        // The Service name exists even with no addresses (NODATA, not NXDOMAIN).
        self.touch(&svc_name);

        if service.service_type == ServiceType::ExternalName {
            let Some(target) = service
                .external_name
                .as_deref()
                .and_then(|t| Name::from_ascii(t.trim_end_matches('.')).ok())
                .map(|mut t| {
                    t.set_fqdn(true);
                    t
                })
            else {
                return false;
            };
            self.add(Record::from_rdata(
                svc_name,
                ZONE_TTL,
                RData::CNAME(CNAME(target)),
            ));
            return true;
        }

        // (target name, address) of each SRV target: the Service itself, or each endpoint.
        let mut srv_targets: Vec<(Name, Option<&_>)> = Vec::new();
        if service.headless {
            for endpoint in service.endpoints.iter().filter(|e| e.ready) {
                let addrs: Vec<IpAddr> = endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                let Some(first) = addrs.first() else { continue };
                let label = endpoint
                    .hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| dashed(*first));
                let Some(endpoint_name) = svc_name.prepend_label(label.as_str()).ok() else {
                    continue;
                };
                for ip in &addrs {
                    self.add(address_record(svc_name.clone(), *ip));
                    self.add(address_record(endpoint_name.clone(), *ip));
                    self.reverse
                        .entry(*ip)
                        .or_default()
                        .push(endpoint_name.clone());
                }
                srv_targets.push((endpoint_name, Some(endpoint)));
            }
        } else {
            for ip in service.cluster_ips.iter().filter_map(|a| a.parse().ok()) {
                self.add(address_record(svc_name.clone(), ip));
                self.reverse.entry(ip).or_default().push(svc_name.clone());
            }
            srv_targets.push((svc_name.clone(), None));
        }

        let weight = (100 / srv_targets.len().max(1)) as u16;
        for port in &service.ports {
            let proto = format!("_{}", port.protocol.to_ascii_lowercase());
            let port_name = (!port.name.is_empty())
                .then(|| name_under(&[&format!("_{}", port.name), &proto], &svc_name))
                .flatten();
            for (target, endpoint) in &srv_targets {
                // A headless Service's SRV names the endpoint's own port (what the client
                // connects to); without a matching endpoint port the Service port is the best
                // guess (CoreDNS does the same).
                let number = endpoint
                    .and_then(|e| ServiceSummary::target_port(e, port))
                    .unwrap_or(port.port);
                let srv = RData::SRV(SRV::new(0, weight, number, target.clone()));
                if let Some(port_name) = &port_name {
                    self.add(Record::from_rdata(port_name.clone(), ZONE_TTL, srv.clone()));
                }
                self.add(Record::from_rdata(svc_name.clone(), ZONE_TTL, srv));
            }
        }
        true
    }

    /// Adds a record, and its owner's ancestors up to the domain as empty non-terminals.
    fn add(&mut self, record: Record) {
        let key = key_of(&record.name);
        let records = self.nodes.entry(key).or_default();
        if !records.contains(&record) {
            records.push(record.clone());
        }
        self.touch_ancestors(&record.name);
    }

    /// Makes `name` (and its ancestors) exist without records.
    fn touch(&mut self, name: &Name) {
        self.nodes.entry(key_of(name)).or_default();
        self.touch_ancestors(name);
    }

    fn touch_ancestors(&mut self, name: &Name) {
        let mut name = name.base_name();
        while self.domain.zone_of(&name) && name.num_labels() > self.domain.num_labels() {
            self.nodes.entry(key_of(&name)).or_default();
            name = name.base_name();
        }
    }

    /// The zone's SOA record (authority section of NXDOMAIN and NODATA answers).
    pub(crate) fn soa(&self) -> &Record {
        &self.soa
    }

    /// Answers `name`/`qtype` from the zone.
    pub(crate) fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup {
        if !self.domain.zone_of(name) {
            return self.lookup_reverse(name, qtype);
        }
        let key = key_of(name);
        let Some(records) = self.nodes.get(&key) else {
            return self.lookup_pod(name, qtype);
        };
        if qtype != RecordType::CNAME {
            if let Some(cname) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
            {
                if let RData::CNAME(CNAME(target)) = &cname.data {
                    return Lookup::Alias {
                        cname: Box::new(with_owner(cname, name)),
                        target: target.clone(),
                    };
                }
            }
        }
        let answers: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| with_owner(r, name))
            .collect();
        if answers.is_empty() {
            return Lookup::NoData;
        }
        let additionals = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(&srv.target),
                _ => None,
            })
            .flat_map(|target| {
                self.nodes
                    .get(&key_of(target))
                    .into_iter()
                    .flatten()
                    .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                    .cloned()
            })
            .fold(Vec::new(), |mut acc, r| {
                if !acc.contains(&r) {
                    acc.push(r);
                }
                acc
            });
        Lookup::Answer {
            answers,
            additionals,
        }
    }

    /// `a-b-c-d.<ns>.pod.<domain>`: the address is in the name (CoreDNS `pods insecure`).
    fn lookup_pod(&self, name: &Name, qtype: RecordType) -> Lookup {
        let extra = name.num_labels().saturating_sub(self.domain.num_labels());
        let labels: Vec<String> = name
            .iter()
            .take(extra as usize)
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        if labels.len() != 3 || labels[2] != "pod" {
            return Lookup::NxDomain;
        }
        let Some(ip) = undashed(&labels[0]) else {
            return Lookup::NxDomain;
        };
        let record = address_record(name.clone(), ip);
        if qtype == record.record_type() || qtype == RecordType::ANY {
            Lookup::Answer {
                answers: vec![record],
                additionals: Vec::new(),
            }
        } else {
            Lookup::NoData
        }
    }

    /// PTR for the addresses the zone names; every other reverse name is forwarded (CoreDNS's
    /// `fallthrough in-addr.arpa ip6.arpa`).
    fn lookup_reverse(&self, name: &Name, qtype: RecordType) -> Lookup {
        if qtype != RecordType::PTR {
            return Lookup::NotOurs;
        }
        let Ok(net) = name.parse_arpa_name() else {
            return Lookup::NotOurs;
        };
        if net.prefix_len() != net.max_prefix_len() {
            return Lookup::NotOurs;
        }
        match self.reverse.get(&net.addr()) {
            Some(names) => Lookup::Answer {
                answers: names
                    .iter()
                    .map(|target| {
                        Record::from_rdata(name.clone(), ZONE_TTL, RData::PTR(PTR(target.clone())))
                    })
                    .collect(),
                additionals: Vec::new(),
            },
            None => Lookup::NotOurs,
        }
    }

    /// How many owner names the zone holds (for logs and tests).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// The map key of a name: fully qualified (case does not matter to `Name`'s `Eq` and `Hash`).
fn key_of(name: &Name) -> Name {
    let mut name = name.clone();
    name.set_fqdn(true);
    name
}

/// `labels` (most specific first) prepended to `base`; `None` when a label is not valid.
fn name_under(labels: &[&str], base: &Name) -> Option<Name> {
    let mut name = base.clone();
    for label in labels.iter().rev() {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        name = name.prepend_label(*label).ok()?;
    }
    Some(name)
}

/// A copy of `record` named as the question spelled it (the zone stores lower case; answers
/// echo the client's case, which some resolvers check as a spoofing defence).
fn with_owner(record: &Record, name: &Name) -> Record {
    let mut record = record.clone();
    record.name = name.clone();
    record
}

fn address_record(name: Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    let mut record = Record::from_rdata(name, ZONE_TTL, data);
    record.dns_class = DNSClass::IN;
    record
}

/// `10.42.1.5` → `10-42-1-5`; `fd00::5` → `fd00--5` (CoreDNS's endpoint and pod labels).
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The inverse of [`dashed`]: four dash-separated octets, else an IPv6 address with dashes for
/// colons.
fn undashed(label: &str) -> Option<IpAddr> {
    if label.split('-').count() == 4 {
        if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
            return Some(IpAddr::V4(v4));
        }
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The SOA CoreDNS serves for the cluster zone (`ns.dns.<domain>`, `hostmaster.<domain>`,
/// minimum = TTL = 5 s).
fn soa_record(domain: &Name, serial: u32) -> Record {
    let mname = name_under(&["ns", "dns"], domain).unwrap_or_else(|| domain.clone());
    let rname = name_under(&["hostmaster"], domain).unwrap_or_else(|| domain.clone());
    Record::from_rdata(
        domain.clone(),
        ZONE_TTL,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, ZONE_TTL)),
    )
}

/// The SOA serial: the time of the update in seconds (as CoreDNS uses its last change).
fn serial_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use skiff_link_proto::proto::service::{
        EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary,
    };

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn key(ns: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn port(name: &str, protocol: &str, port: u16) -> ServicePortSummary {
        ServicePortSummary {
            name: name.into(),
            protocol: protocol.into(),
            port,
            node_port: None,
        }
    }

    fn endpoint(addr: &str, hostname: Option<&str>, ready: bool) -> EndpointSummary {
        EndpointSummary {
            addresses: vec![addr.into()],
            hostname: hostname.map(Into::into),
            ready,
            serving: ready,
            ports: vec![EndpointPortSummary {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080,
            }],
            ..Default::default()
        }
    }

    pub(crate) fn services() -> Vec<ServiceSummary> {
        vec![
            ServiceSummary {
                key: key("default", "web"),
                cluster_ips: vec!["10.43.0.20".into(), "fd00:43::20".into()],
                ports: vec![port("http", "TCP", 80), port("", "UDP", 53)],
                endpoints: vec![endpoint("10.42.1.5", None, true)],
                ..Default::default()
            },
            ServiceSummary {
                key: key("db", "pg"),
                headless: true,
                ports: vec![port("http", "TCP", 5432)],
                endpoints: vec![
                    endpoint("10.42.1.7", Some("pg-0"), true),
                    endpoint("10.42.2.8", None, true),
                    endpoint("10.42.2.9", Some("pg-2"), false),
                ],
                ..Default::default()
            },
            ServiceSummary {
                key: key("default", "ext"),
                service_type: ServiceType::ExternalName,
                external_name: Some("example.org".into()),
                ..Default::default()
            },
            ServiceSummary {
                key: key("default", "Bad_Name!"),
                cluster_ips: vec!["10.43.0.99".into()],
                ..Default::default()
            },
        ]
    }

    fn zone() -> Zone {
        Zone::build(
            &n("cluster.local."),
            &["10.43.0.10".parse().unwrap()],
            &services(),
        )
    }

    fn answers(lookup: Lookup) -> Vec<String> {
        match lookup {
            Lookup::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn cluster_ip_service_answers_a_aaaa_and_srv() {
        let zone = zone();
        let svc = n("web.default.svc.cluster.local.");
        assert_eq!(answers(zone.lookup(&svc, RecordType::A)), ["10.43.0.20"]);
        assert_eq!(
            answers(zone.lookup(&svc, RecordType::AAAA)),
            ["fd00:43::20"]
        );
        // Case does not matter, and the answer echoes the question's spelling.
        let upper = n("WEB.Default.SVC.cluster.local.");
        match zone.lookup(&upper, RecordType::A) {
            Lookup::Answer { answers, .. } => {
                assert_eq!(answers[0].name.to_ascii(), upper.to_ascii())
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answers(zone.lookup(
                &n("_http._tcp.web.default.svc.cluster.local."),
                RecordType::SRV
            )),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        // The unnamed port has no _port._proto name, but the Service name carries both SRVs.
        assert_eq!(answers(zone.lookup(&svc, RecordType::SRV)).len(), 2);
        assert_eq!(
            zone.lookup(
                &n("_http._udp.web.default.svc.cluster.local."),
                RecordType::SRV
            ),
            Lookup::NxDomain
        );
        assert_eq!(zone.lookup(&svc, RecordType::MX), Lookup::NoData);
    }

    #[test]
    fn headless_service_answers_ready_endpoints_and_their_names() {
        let zone = zone();
        let svc = n("pg.db.svc.cluster.local.");
        let mut a = answers(zone.lookup(&svc, RecordType::A));
        a.sort();
        assert_eq!(
            a,
            ["10.42.1.7", "10.42.2.8"],
            "the unready endpoint is left out"
        );
        assert_eq!(
            answers(zone.lookup(&n("pg-0.pg.db.svc.cluster.local."), RecordType::A)),
            ["10.42.1.7"]
        );
        assert_eq!(
            answers(zone.lookup(&n("10-42-2-8.pg.db.svc.cluster.local."), RecordType::A)),
            ["10.42.2.8"]
        );
        assert_eq!(
            zone.lookup(&n("pg-2.pg.db.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
        match zone.lookup(&n("_http._tcp.pg.db.svc.cluster.local."), RecordType::SRV) {
            Lookup::Answer {
                answers,
                additionals,
            } => {
                let mut srv: Vec<String> = answers.iter().map(|r| r.data.to_string()).collect();
                srv.sort();
                assert_eq!(
                    srv,
                    [
                        "0 50 8080 10-42-2-8.pg.db.svc.cluster.local.",
                        "0 50 8080 pg-0.pg.db.svc.cluster.local."
                    ]
                );
                assert_eq!(
                    additionals.len(),
                    2,
                    "the targets' addresses: {additionals:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ptr_for_cluster_ips_and_endpoints_and_forward_for_the_rest() {
        let zone = zone();
        let ptr =
            |ip: &str| zone.lookup(&Name::from(ip.parse::<IpAddr>().unwrap()), RecordType::PTR);
        assert_eq!(
            answers(ptr("10.43.0.20")),
            ["web.default.svc.cluster.local."]
        );
        assert_eq!(
            answers(ptr("fd00:43::20")),
            ["web.default.svc.cluster.local."]
        );
        assert_eq!(answers(ptr("10.42.1.7")), ["pg-0.pg.db.svc.cluster.local."]);
        assert_eq!(ptr("192.0.2.1"), Lookup::NotOurs);
        assert_eq!(
            zone.lookup(&n("example.org."), RecordType::A),
            Lookup::NotOurs
        );
    }

    #[test]
    fn external_name_is_an_alias() {
        let zone = zone();
        match zone.lookup(&n("ext.default.svc.cluster.local."), RecordType::A) {
            Lookup::Alias { cname, target } => {
                assert_eq!(target.to_ascii(), "example.org.");
                assert_eq!(cname.record_type(), RecordType::CNAME);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answers(zone.lookup(&n("ext.default.svc.cluster.local."), RecordType::CNAME)),
            ["example.org."]
        );
    }

    #[test]
    fn pods_apex_and_missing_names() {
        let zone = zone();
        assert_eq!(
            answers(zone.lookup(&n("10-42-1-5.default.pod.cluster.local."), RecordType::A)),
            ["10.42.1.5"]
        );
        assert_eq!(
            answers(zone.lookup(
                &n("fd00-42--5.default.pod.cluster.local."),
                RecordType::AAAA
            )),
            ["fd00:42::5"]
        );
        assert_eq!(
            zone.lookup(&n("not-an-ip.default.pod.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
        assert_eq!(
            zone.lookup(&n("nope.default.svc.cluster.local."), RecordType::A),
            Lookup::NxDomain
        );
        // Empty non-terminals exist.
        assert_eq!(
            zone.lookup(&n("default.svc.cluster.local."), RecordType::A),
            Lookup::NoData
        );
        assert_eq!(
            zone.lookup(&n("svc.cluster.local."), RecordType::A),
            Lookup::NoData
        );
        assert_eq!(
            answers(zone.lookup(&n("cluster.local."), RecordType::SOA)).len(),
            1
        );
        assert_eq!(
            answers(zone.lookup(&n("cluster.local."), RecordType::NS)),
            ["ns.dns.cluster.local."]
        );
        assert_eq!(
            answers(zone.lookup(&n("ns.dns.cluster.local."), RecordType::A)),
            ["10.43.0.10"]
        );
        assert_eq!(
            answers(zone.lookup(&n("dns-version.cluster.local."), RecordType::TXT)),
            ["1.1.0"]
        );
        // The Service with an invalid name was skipped, the others were not.
        assert!(zone.len() > 10);
    }
}

//! Stale UDP conntrack entries of Services, deleted after the rules change (upstream
//! kube-proxy's `conntrack.CleanStaleEntries`).
//!
//! NAT happens only for a connection's first packet: later packets follow the conntrack
//! entry. A UDP client that keeps its source port (DNS resolvers, syslog, QUIC) therefore keeps
//! talking to an endpoint that is gone until the entry times out, and datagrams sent while a
//! Service had no endpoint (rejected, not DNATed) keep being rejected after one appears. So,
//! for every UDP Service port, the entries whose original destination is one of its addresses
//! (cluster IP, external and load-balancer IPs, `:port`) or its node port, and whose reply
//! source is not one of its serving endpoints, are deleted — as upstream does. A Service
//! without serving endpoints loses only the entries that were DNATed (to endpoints now
//! gone), so its clients are rejected at once instead of talking into the void.
//!
//! [`stale`] decides (pure, unit-tested); [`clean`] dumps the node's IPv4 conntrack table
//! through ctnetlink (`NETLINK_NETFILTER`, `IPCTNL_MSG_CT_GET` dump) and deletes the stale
//! entries one by one by their original tuple (`IPCTNL_MSG_CT_DELETE`), on a thread inside the
//! node's network namespace. No `conntrack` binary is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use skiff_link_proto::proto::service::{ServiceSummary, ServiceType};

/// The UDP destinations of the Services and the endpoint addresses each may be DNATed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UdpFrontends {
    /// (cluster, external or load-balancer IP, port) → serving endpoint addresses.
    by_address: BTreeMap<(Ipv4Addr, u16), BTreeSet<Ipv4Addr>>,
    /// Node port → serving endpoint addresses.
    by_node_port: BTreeMap<u16, BTreeSet<Ipv4Addr>>,
}

impl UdpFrontends {
    /// Whether there is no UDP Service port at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_address.is_empty() && self.by_node_port.is_empty()
    }
}

fn ipv4(value: &str) -> Option<Ipv4Addr> {
    match value.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if !ip.is_unspecified() && !ip.is_loopback() => Some(ip),
        _ => None,
    }
}

/// The UDP frontends of `services`. Addresses the node answers itself (`local_ips`, the
/// cluster DNS address) are never DNATed and have no frontend. Endpoints count when they are
/// serving (traffic policies are not considered: a changed policy must not break existing
/// flows, as upstream).
pub(crate) fn udp_frontends(
    services: &[ServiceSummary],
    local_ips: &BTreeSet<Ipv4Addr>,
) -> UdpFrontends {
    let mut out = UdpFrontends::default();
    for svc in services {
        if svc.headless || svc.service_type == ServiceType::ExternalName {
            continue;
        }
        let mut addresses: Vec<Ipv4Addr> = svc
            .cluster_ips
            .iter()
            .chain(&svc.external_ips)
            .filter_map(|a| ipv4(a))
            .collect();
        if svc.service_type == ServiceType::LoadBalancer {
            addresses.extend(svc.load_balancer_ips.iter().filter_map(|a| ipv4(a)));
        }
        addresses.retain(|ip| !local_ips.contains(ip));
        let node_ports = matches!(
            svc.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        );
        for port in svc.ports.iter().filter(|p| p.protocol == "UDP") {
            let endpoints: BTreeSet<Ipv4Addr> = svc
                .endpoints
                .iter()
                .filter(|e| e.serving && ServiceSummary::target_port(e, port).is_some())
                .filter_map(|e| e.addresses.first().and_then(|a| ipv4(a)))
                .collect();
            for ip in &addresses {
                out.by_address
                    .entry((*ip, port.port))
                    .or_default()
                    .extend(endpoints.iter().copied());
            }
            if let Some(node_port) = port.node_port.filter(|p| node_ports && *p != 0) {
                out.by_node_port
                    .entry(node_port)
                    .or_default()
                    .extend(endpoints.iter().copied());
            }
        }
    }
    out
}

/// One UDP conntrack entry: its original tuple and the source of its reply tuple (the
/// endpoint it was DNATed to, or the original destination when it was not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub reply_src: Ipv4Addr,
}

/// Whether `flow` no longer matches what the rules would do with its first packet.
fn is_stale(flow: &Flow, endpoints: &BTreeSet<Ipv4Addr>) -> bool {
    if endpoints.is_empty() {
        // No endpoint: only entries DNATed to an endpoint that went are wrong.
        flow.reply_src != flow.dst
    } else {
        !endpoints.contains(&flow.reply_src)
    }
}

/// The entries of `flows` to delete.
pub(crate) fn stale(flows: &[Flow], frontends: &UdpFrontends) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| {
            let by_address = frontends
                .by_address
                .get(&(f.dst, f.dport))
                .is_some_and(|eps| is_stale(f, eps));
            let by_node_port = frontends
                .by_node_port
                .get(&f.dport)
                .is_some_and(|eps| is_stale(f, eps));
            by_address || by_node_port
        })
        .copied()
        .collect()
}

/// What one cleanup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CleanStats {
    /// UDP entries seen.
    pub udp: usize,
    /// Entries deleted.
    pub deleted: usize,
}

/// Dumps the IPv4 conntrack table of the calling thread's namespace and deletes the UDP
/// entries [`stale`] picks. Blocking: run it on a thread inside the namespace.
pub(crate) fn clean(frontends: &UdpFrontends) -> std::io::Result<CleanStats> {
    let socket = Ctnetlink::open()?;
    let flows = socket.dump_udp()?;
    let mut stats = CleanStats {
        udp: flows.len(),
        deleted: 0,
    };
    for flow in stale(&flows, frontends) {
        if socket.delete(&flow)? {
            stats.deleted += 1;
        }
    }
    Ok(stats)
}

/// A ctnetlink socket.
struct Ctnetlink {
    socket: Socket,
    seq: std::cell::Cell<u32>,
}

/// Receive buffer: the kernel's dump parts are at most 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;

impl Ctnetlink {
    fn open() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: std::cell::Cell::new(1),
        })
    }

    /// Sends `message` with `flags`; returns its sequence number.
    fn send(&self, message: ConntrackMessage, flags: u16) -> std::io::Result<u32> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
                message,
            )),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(seq)
    }

    /// Receives the answers to `seq` until `Done` (dumps) or the ack (other requests),
    /// handing each conntrack message to `each`. A negative ack is returned as an error.
    fn receive(
        &self,
        seq: u32,
        dump: bool,
        mut each: impl FnMut(&ConntrackMessage),
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            let size = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let message =
                    NetlinkMessage::<NetfilterMessage>::deserialize(&buf[offset..size])
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let length = message.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => match e.code {
                        None if !dump => return Ok(()),
                        None => {}
                        Some(code) => return Err(std::io::Error::from_raw_os_error(-code.get())),
                    },
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(ct),
                        ..
                    }) => each(&ct),
                    _ => {}
                }
            }
        }
    }

    /// The UDP entries of the IPv4 table.
    fn dump_udp(&self) -> std::io::Result<Vec<Flow>> {
        let seq = self.send(
            ConntrackMessage::Get(Vec::new()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        let mut flows = Vec::new();
        self.receive(seq, true, |message| {
            if let Some(flow) = udp_flow(message) {
                flows.push(flow);
            }
        })?;
        Ok(flows)
    }

    /// Deletes the entry of `flow`'s original tuple; false when it was already gone.
    fn delete(&self, flow: &Flow) -> std::io::Result<bool> {
        let seq = self.send(delete_message(flow), NLM_F_REQUEST | NLM_F_ACK)?;
        match self.receive(seq, false, |_| {}) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The delete request of `flow`'s entry: its original tuple.
fn delete_message(flow: &Flow) -> ConntrackMessage {
    ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(IpAddr::V4(flow.src)),
            IPTuple::DestinationAddress(IpAddr::V4(flow.dst)),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Udp),
            ProtoTuple::SourcePort(flow.sport),
            ProtoTuple::DestinationPort(flow.dport),
        ]),
    ])])
}

/// (source, destination, protocol, source port, destination port) of a tuple.
type TupleParts = (
    Option<Ipv4Addr>,
    Option<Ipv4Addr>,
    Option<Protocol>,
    Option<u16>,
    Option<u16>,
);

fn tuple_parts(tuples: &[Tuple]) -> TupleParts {
    let mut parts: TupleParts = (None, None, None, None, None);
    for tuple in tuples {
        match tuple {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => parts.0 = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => parts.1 = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(p) => parts.2 = Some(*p),
                        ProtoTuple::SourcePort(p) => parts.3 = Some(*p),
                        ProtoTuple::DestinationPort(p) => parts.4 = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    parts
}

/// The UDP flow a dumped entry describes, if it is one.
fn udp_flow(message: &ConntrackMessage) -> Option<Flow> {
    let ConntrackMessage::New(attributes) = message else {
        return None;
    };
    let mut original = None;
    let mut reply = None;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(t) => original = Some(tuple_parts(t)),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(tuple_parts(t)),
            _ => {}
        }
    }
    let (Some(src), Some(dst), Some(Protocol::Udp), Some(sport), Some(dport)) = original? else {
        return None;
    };
    let reply_src = reply?.0?;
    Some(Flow {
        src,
        dst,
        sport,
        dport,
        reply_src,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, ParseableParametrized};
    use skiff_link_proto::proto::service::{
        EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary,
    };

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn endpoint(address: &str, serving: bool, port: u16) -> EndpointSummary {
        EndpointSummary {
            addresses: vec![address.into()],
            node_name: Some("n1".into()),
            ready: serving,
            serving,
            ports: vec![EndpointPortSummary {
                name: String::new(),
                port,
                protocol: "UDP".into(),
            }],
            ..Default::default()
        }
    }

    fn udp_service(cluster_ip: &str, endpoints: Vec<EndpointSummary>) -> ServiceSummary {
        ServiceSummary {
            key: ServiceKey {
                namespace: "default".into(),
                name: "dns".into(),
            },
            service_type: ServiceType::NodePort,
            cluster_ips: vec![cluster_ip.into()],
            external_ips: vec!["192.0.2.7".into()],
            ports: vec![ServicePortSummary {
                name: String::new(),
                protocol: "UDP".into(),
                port: 53,
                node_port: Some(30053),
            }],
            endpoints,
            ..Default::default()
        }
    }

    fn flow(dst: &str, dport: u16, reply_src: &str) -> Flow {
        Flow {
            src: ip("10.42.0.9"),
            dst: ip(dst),
            sport: 40000,
            dport,
            reply_src: ip(reply_src),
        }
    }

    #[test]
    fn entries_not_pointing_at_a_serving_endpoint_are_stale() {
        let local = BTreeSet::from([ip("10.43.0.10")]);
        let services = vec![
            udp_service(
                "10.43.0.53",
                vec![
                    endpoint("10.42.0.5", true, 5353),
                    endpoint("10.42.0.6", false, 5353),
                ],
            ),
            udp_service("10.43.0.54", vec![]),
            // The node's own resolver address: never a frontend.
            udp_service("10.43.0.10", vec![endpoint("10.42.0.5", true, 5353)]),
        ];
        let mut services = services;
        services[1].service_type = ServiceType::ClusterIP;
        services[1].external_ips.clear();
        services[2].service_type = ServiceType::ClusterIP;
        services[2].external_ips.clear();
        let frontends = udp_frontends(&services, &local);
        let cases = [
            (
                "DNATed to the serving endpoint",
                flow("10.43.0.53", 53, "10.42.0.5"),
                false,
            ),
            (
                "DNATed to an endpoint that went",
                flow("10.43.0.53", 53, "10.42.0.99"),
                true,
            ),
            (
                "DNATed to a not-serving endpoint",
                flow("10.43.0.53", 53, "10.42.0.6"),
                true,
            ),
            (
                "sent while there was no endpoint",
                flow("10.43.0.53", 53, "10.43.0.53"),
                true,
            ),
            (
                "external IP, old endpoint",
                flow("192.0.2.7", 53, "10.42.0.99"),
                true,
            ),
            (
                "external IP, serving endpoint",
                flow("192.0.2.7", 53, "10.42.0.5"),
                false,
            ),
            (
                "node port, old endpoint",
                flow("192.168.1.2", 30053, "10.42.0.99"),
                true,
            ),
            (
                "node port, serving endpoint",
                flow("192.168.1.2", 30053, "10.42.0.5"),
                false,
            ),
            (
                "another port of the address",
                flow("10.43.0.53", 54, "10.42.0.99"),
                false,
            ),
            (
                "no endpoints: rejected entries stay",
                flow("10.43.0.54", 53, "10.43.0.54"),
                false,
            ),
            (
                "no endpoints: DNATed ones go",
                flow("10.43.0.54", 53, "10.42.0.7"),
                true,
            ),
            (
                "the local resolver address",
                flow("10.43.0.10", 53, "10.43.0.10"),
                false,
            ),
            ("unrelated traffic", flow("1.1.1.1", 53, "1.1.1.1"), false),
        ];
        let flows: Vec<Flow> = cases.iter().map(|(_, f, _)| *f).collect();
        let stale = stale(&flows, &frontends);
        for (name, f, want) in cases {
            assert_eq!(stale.contains(&f), want, "{name}");
        }
        // TCP ports have no frontend.
        let mut tcp = udp_service("10.43.0.80", vec![endpoint("10.42.0.5", true, 80)]);
        tcp.ports[0].protocol = "TCP".into();
        assert!(udp_frontends(&[tcp], &local).is_empty());
    }

    #[test]
    fn delete_request_carries_the_original_tuple_and_dumped_entries_parse() {
        let f = Flow {
            src: ip("10.42.0.9"),
            dst: ip("10.43.0.53"),
            sport: 40000,
            dport: 53,
            reply_src: ip("10.42.0.5"),
        };
        let delete = delete_message(&f);
        let mut buf = vec![0u8; delete.buffer_len()];
        delete.emit(&mut buf);
        // Parsed back, the tuple is the flow's.
        let parsed = ConntrackMessage::parse_with_param(&buf[..], 2).unwrap();
        let ConntrackMessage::Delete(attributes) = &parsed else {
            panic!("{parsed:?}");
        };
        let ConntrackAttribute::CtaTupleOrig(tuple) = &attributes[0] else {
            panic!("{attributes:?}");
        };
        assert_eq!(
            tuple_parts(tuple),
            (
                Some(f.src),
                Some(f.dst),
                Some(Protocol::Udp),
                Some(40000),
                Some(53)
            )
        );
        // A dumped entry (IPCTNL_MSG_CT_NEW with both tuples) becomes the flow.
        let ConntrackMessage::Delete(mut attributes) = delete else {
            unreachable!()
        };
        attributes.push(ConntrackAttribute::CtaTupleReply(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(IpAddr::V4(f.reply_src)),
                IPTuple::DestinationAddress(IpAddr::V4(f.src)),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Udp),
                ProtoTuple::SourcePort(5353),
                ProtoTuple::DestinationPort(40000),
            ]),
        ]));
        assert_eq!(
            udp_flow(&ConntrackMessage::New(attributes.clone())),
            Some(f)
        );
        // TCP entries are not UDP flows.
        let ConntrackAttribute::CtaTupleOrig(tuple) = &mut attributes[0] else {
            unreachable!()
        };
        tuple[1] = Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(40000),
            ProtoTuple::DestinationPort(53),
        ]);
        assert_eq!(udp_flow(&ConntrackMessage::New(attributes)), None);
    }
}

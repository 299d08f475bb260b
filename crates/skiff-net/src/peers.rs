//! Reaching other nodes' pods: one route per peer (host-gw), or per peer a route through the
//! VXLAN device plus its ARP and FDB entries (like flannel's `vxlan` backend, with no
//! learning and no multicast). Reconciled against what the kernel has, so a peer that leaves
//! loses its entries and a restart re-uses what is already there.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;

use crate::config::{Backend, NetworkConfig, Peer};
use crate::devices::{mac_for, VTEP_MAC_TAG};
use crate::netlink::{
    errno, route_destination, route_gateway, route_oif, Netlink, SKIFF_ROUTE_PROTOCOL,
};
use crate::NetError;

/// Drops this node from `peers` and checks the rest against the node's configuration and
/// each other. A bad entry (one node reporting a wrong address or CIDR) is skipped and logged,
/// never fatal: failing the whole set would freeze the routes to every other node.
pub(crate) fn validate(config: &NetworkConfig, peers: &[Peer]) -> Vec<Peer> {
    let mut kept: Vec<Peer> = Vec::new();
    for peer in peers {
        if peer.node_ip == config.node_ip && peer.pod_cidr == config.pod_cidr {
            continue;
        }
        match check_peer(config, &kept, peer) {
            Ok(()) => kept.push(peer.clone()),
            Err(error) => tracing::warn!(%error, "skipping a peer node"),
        }
    }
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    kept
}

/// Why `peer` cannot be routed to, given this node's configuration and the peers kept so far.
fn check_peer(config: &NetworkConfig, kept: &[Peer], peer: &Peer) -> Result<(), NetError> {
    let invalid = |reason: String| NetError::InvalidPeer {
        node: peer.name.clone(),
        reason,
    };
    if peer.node_ip == config.node_ip {
        return Err(invalid(format!(
            "has this node's IP {} but pod CIDR {} instead of {}",
            peer.node_ip, peer.pod_cidr, config.pod_cidr
        )));
    }
    if peer.pod_cidr != peer.pod_cidr.trunc() {
        return Err(invalid(format!(
            "pod CIDR {} has host bits set",
            peer.pod_cidr
        )));
    }
    if !config.cluster_cidr.contains(&peer.pod_cidr) {
        return Err(invalid(format!(
            "pod CIDR {} is outside the cluster CIDR {}",
            peer.pod_cidr, config.cluster_cidr
        )));
    }
    if overlaps(peer.pod_cidr, config.pod_cidr) {
        return Err(invalid(format!(
            "pod CIDR {} overlaps this node's pod CIDR {}",
            peer.pod_cidr, config.pod_cidr
        )));
    }
    if config.cluster_cidr.contains(&peer.node_ip)
        || peer.node_ip.is_unspecified()
        || peer.node_ip.is_loopback()
        || peer.node_ip.is_multicast()
        || peer.node_ip.is_broadcast()
    {
        return Err(invalid(format!("{} cannot be a node IP", peer.node_ip)));
    }
    if let Some(other) = kept.iter().find(|k| overlaps(k.pod_cidr, peer.pod_cidr)) {
        return Err(invalid(format!(
            "pod CIDR {} overlaps pod CIDR {} of node {:?}",
            peer.pod_cidr, other.pod_cidr, other.name
        )));
    }
    if let Some(other) = kept.iter().find(|k| k.node_ip == peer.node_ip) {
        return Err(invalid(format!(
            "node IP {} is also the IP of node {:?}",
            peer.node_ip, other.name
        )));
    }
    Ok(())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A route skiff wants in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WantedRoute {
    peer: String,
    dst: Ipv4Net,
    gateway: Ipv4Addr,
    /// Set for VXLAN (device route with an on-link gateway).
    oif: Option<u32>,
}

fn wanted_routes(backend: Backend, vxlan_index: Option<u32>, peers: &[Peer]) -> Vec<WantedRoute> {
    peers
        .iter()
        .map(|p| match (backend, vxlan_index) {
            (Backend::Vxlan { .. }, Some(index)) => WantedRoute {
                peer: p.name.clone(),
                dst: p.pod_cidr,
                gateway: p.pod_cidr.network(),
                oif: Some(index),
            },
            _ => WantedRoute {
                peer: p.name.clone(),
                dst: p.pod_cidr,
                gateway: p.node_ip,
                oif: None,
            },
        })
        .collect()
}

/// Makes the kernel's peer routes (and, for VXLAN, neighbour and FDB entries) match `peers`.
pub(crate) async fn sync(
    nl: &Netlink,
    backend: Backend,
    vxlan_index: Option<u32>,
    peers: &[Peer],
) -> Result<(), NetError> {
    let wanted = wanted_routes(backend, vxlan_index, peers);
    for route in nl.skiff_routes().await? {
        let keep = route_destination(&route).is_some_and(|(ip, len)| {
            wanted.iter().any(|w| {
                w.dst.network() == ip
                    && w.dst.prefix_len() == len
                    && route_gateway(&route) == Some(w.gateway)
                    && w.oif.is_none_or(|oif| route_oif(&route) == Some(oif))
            })
        });
        if !keep {
            nl.delete_route(route).await?;
        }
    }
    if let Some(index) = vxlan_index {
        sync_vxlan_neighbours(nl, index, peers).await?;
    }
    for w in &wanted {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(w.dst.network(), w.dst.prefix_len())
            .gateway(w.gateway)
            .protocol(RouteProtocol::Other(SKIFF_ROUTE_PROTOCOL));
        if let Some(oif) = w.oif {
            builder = builder.output_interface(oif).onlink();
        }
        let result = nl
            .handle()
            .route()
            .add(builder.build())
            .replace()
            .execute()
            .await;
        match result {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENETUNREACH) => {
                return Err(NetError::InvalidPeer {
                    node: w.peer.clone(),
                    reason: format!(
                        "node IP {} is not on a directly connected network of this node; the \
                         host-gw backend needs all nodes on one L2 segment (use vxlan)",
                        w.gateway
                    ),
                });
            }
            Err(e) => {
                return Err(NetError::netlink(format!(
                    "add route {} via {} for node {:?}",
                    w.dst, w.gateway, w.peer
                ))(e))
            }
        }
    }
    Ok(())
}

fn neighbour_ip(n: &NeighbourMessage) -> Option<Ipv4Addr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

fn neighbour_mac(n: &NeighbourMessage) -> Option<&[u8]> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => Some(mac.as_slice()),
        _ => None,
    })
}

async fn sync_vxlan_neighbours(nl: &Netlink, index: u32, peers: &[Peer]) -> Result<(), NetError> {
    // (VTEP address, MAC, node IP) per peer.
    let wanted: Vec<(Ipv4Addr, [u8; 6], Ipv4Addr)> = peers
        .iter()
        .map(|p| {
            (
                p.pod_cidr.network(),
                mac_for(VTEP_MAC_TAG, p.node_ip),
                p.node_ip,
            )
        })
        .collect();

    for entry in nl.neighbours(AddressFamily::Inet, index).await? {
        if entry.header.state != NeighbourState::Permanent {
            continue;
        }
        let keep = wanted.iter().any(|(vtep, mac, _)| {
            neighbour_ip(&entry) == Some(*vtep) && neighbour_mac(&entry) == Some(&mac[..])
        });
        if !keep {
            delete_neighbour(nl, entry, "ARP").await?;
        }
    }
    for entry in nl.neighbours(AddressFamily::Bridge, index).await? {
        let ours = neighbour_mac(&entry)
            .is_some_and(|m| m.len() == 6 && m[0] == 0x0a && m[1] == VTEP_MAC_TAG);
        if !ours {
            continue;
        }
        let keep = wanted.iter().any(|(_, mac, node_ip)| {
            neighbour_mac(&entry) == Some(&mac[..]) && neighbour_ip(&entry) == Some(*node_ip)
        });
        if !keep {
            delete_neighbour(nl, entry, "FDB").await?;
        }
    }

    let wanted_macs: BTreeSet<[u8; 6]> = wanted.iter().map(|w| w.1).collect();
    debug_assert_eq!(
        wanted_macs.len(),
        wanted.len(),
        "validated peers have distinct IPs"
    );
    for (vtep, mac, node_ip) in &wanted {
        nl.handle()
            .neighbours()
            .add(index, IpAddr::V4(*vtep))
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(format!(
                "add ARP entry {vtep} on the VXLAN device"
            )))?;
        nl.handle()
            .neighbours()
            .add_bridge(index, mac)
            .destination(IpAddr::V4(*node_ip))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(format!(
                "add FDB entry for node {node_ip} on the VXLAN device"
            )))?;
    }
    Ok(())
}

async fn delete_neighbour(
    nl: &Netlink,
    entry: NeighbourMessage,
    what: &str,
) -> Result<(), NetError> {
    match nl.handle().neighbours().del(entry).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ESRCH)) => Ok(()),
        Err(e) => Err(NetError::netlink(format!(
            "delete stale {what} entry on the VXLAN device"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        NetworkConfig::new(
            "10.42.1.0/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
            "192.168.1.11".parse().unwrap(),
            "/tmp/x",
        )
    }

    fn peer(name: &str, ip: &str, cidr: &str) -> Peer {
        Peer {
            name: name.into(),
            node_ip: ip.parse().unwrap(),
            pod_cidr: cidr.parse().unwrap(),
        }
    }

    #[test]
    fn drops_itself_and_sorts() {
        let kept = validate(
            &config(),
            &[
                peer("n3", "192.168.1.13", "10.42.3.0/24"),
                peer("self", "192.168.1.11", "10.42.1.0/24"),
                peer("n2", "192.168.1.12", "10.42.2.0/24"),
            ],
        );
        let names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["n2", "n3"]);
    }

    #[test]
    fn bad_peers_are_refused_by_name() {
        let cases = [
            (
                peer("a", "192.168.1.12", "10.43.0.0/24"),
                "outside the cluster CIDR",
            ),
            (
                peer("b", "192.168.1.12", "10.42.1.0/25"),
                "overlaps this node's pod CIDR",
            ),
            (
                peer("c", "10.42.9.9", "10.42.2.0/24"),
                "cannot be a node IP",
            ),
            (
                peer("d", "192.168.1.11", "10.42.7.0/24"),
                "has this node's IP",
            ),
            (peer("e", "0.0.0.0", "10.42.2.0/24"), "cannot be a node IP"),
        ];
        for (p, needle) in cases {
            let err = check_peer(&config(), &[], &p).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains(&format!("{:?}", p.name)),
                "{err}"
            );
        }
        let x = peer("x", "192.168.1.12", "10.42.2.0/24");
        let err = check_peer(
            &config(),
            std::slice::from_ref(&x),
            &peer("y", "192.168.1.13", "10.42.2.0/23"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"y\"") && err.contains("\"x\""), "{err}");
        let err = check_peer(
            &config(),
            std::slice::from_ref(&x),
            &peer("y", "192.168.1.12", "10.42.3.0/24"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("also the IP of node \"x\""), "{err}");
    }

    /// One node reporting a bad address or CIDR must not cost the routes to every other node.
    #[test]
    fn one_bad_peer_is_skipped_and_the_rest_kept() {
        let kept = validate(
            &config(),
            &[
                peer("good-1", "192.168.1.12", "10.42.2.0/24"),
                peer("bad-cidr", "192.168.1.20", "10.99.0.0/24"),
                peer("bad-ip", "127.0.0.1", "10.42.4.0/24"),
                peer("squatter", "192.168.1.21", "10.42.2.0/25"),
                peer("good-2", "192.168.1.13", "10.42.3.0/24"),
            ],
        );
        let names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["good-1", "good-2"]);
    }

    #[test]
    fn vxlan_routes_go_through_the_device_with_onlink_gateways() {
        let peers = [peer("n2", "192.168.2.12", "10.42.2.0/24")];
        let routes = wanted_routes(Backend::vxlan(), Some(7), &peers);
        assert_eq!(routes[0].gateway, "10.42.2.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(routes[0].oif, Some(7));
        let routes = wanted_routes(Backend::HostGw, None, &peers);
        assert_eq!(
            routes[0].gateway,
            "192.168.2.12".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(routes[0].oif, None);
    }
}

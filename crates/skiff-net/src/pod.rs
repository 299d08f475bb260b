//! A pod's interfaces: a veth pair whose host end joins the bridge and whose other end is
//! created directly inside the pod's namespace as `eth0`, with the pod's address, `lo` up and a
//! default route via the bridge.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::config::POD_INTERFACE;
use crate::netlink::{errno, route_destination, route_gateway, Netlink};
use crate::netns::NetNs;
use crate::NetError;

/// Prefix of the host ends of pod veth pairs.
pub const VETH_PREFIX: &str = "skf";

/// The host-side interface name of a pod: `skf` + 12 hex digits of a hash of its uid (stable,
/// so detach finds it even after a restart, and 15 bytes, the kernel's limit).
pub(crate) fn host_veth_name(uid: &str) -> String {
    // FNV-1a, 64 bits: deterministic across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in uid.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{VETH_PREFIX}{:012x}", hash >> 16)
}

/// Where a pod gets plugged in.
pub(crate) struct PodPlumbing<'a> {
    pub host: &'a Netlink,
    pub bridge_index: u32,
    pub mtu: u32,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

impl PodPlumbing<'_> {
    /// Whether the pod's interfaces are already in place and correct.
    pub(crate) async fn is_plumbed(
        &self,
        pod_ns: &NetNs,
        veth: &str,
        ip: Ipv4Addr,
    ) -> Result<bool, NetError> {
        let Some(host_end) = self.host.link_by_name(veth).await? else {
            return Ok(false);
        };
        if host_end.controller != Some(self.bridge_index) || !host_end.up {
            return Ok(false);
        }
        let pod = Netlink::connect(pod_ns).await?;
        let Some(eth0) = pod.link_by_name(POD_INTERFACE).await? else {
            return Ok(false);
        };
        // The pod's eth0 must be the peer of this host veth, not some other interface.
        let peer_index = eth0.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        });
        if peer_index != Some(host_end.index) || !eth0.up {
            return Ok(false);
        }
        let has_ip = pod
            .ipv4_addresses(Some(eth0.index))
            .await?
            .iter()
            .any(|a| a.addr == ip && a.prefix_len == self.prefix_len);
        if !has_ip {
            return Ok(false);
        }
        let routes: Vec<RouteMessage> = pod
            .handle()
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(NetError::netlink("list pod routes"))?;
        Ok(routes.iter().any(|r| {
            route_destination(r).is_none()
                && r.header.destination_prefix_length == 0
                && route_gateway(r) == Some(self.gateway)
        }))
    }

    /// Creates the veth pair and configures both ends (replacing a stale host end).
    pub(crate) async fn plumb(
        &self,
        pod_ns: &NetNs,
        veth: &str,
        ip: Ipv4Addr,
        what: &str,
    ) -> Result<(), NetError> {
        self.host.delete_link_by_name(veth).await?;

        // The pod end is set up later, from inside the pod: a veth end cannot be opened
        // before its pair is complete (the kernel answers ENOTCONN).
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(POD_INTERFACE.to_string()));
        peer.attributes.push(LinkAttribute::Mtu(self.mtu));
        peer.attributes
            .push(LinkAttribute::NetNsFd(pod_ns.raw_fd()));
        let message = LinkVeth::new(veth, POD_INTERFACE)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(self.mtu)
            .controller(self.bridge_index)
            .up()
            .build();
        self.host
            .handle()
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| {
                if errno(&e) == Some(libc::EEXIST) {
                    NetError::UnexpectedLink {
                        name: POD_INTERFACE.to_string(),
                        reason: format!(
                            "pod {what}: its network namespace {} already has an {POD_INTERFACE} \
                             that skiff did not create",
                            pod_ns.path().display()
                        ),
                    }
                } else {
                    NetError::netlink(format!("create veth {veth} for pod {what}"))(e)
                }
            })?;
        let host_end =
            self.host
                .link_by_name(veth)
                .await?
                .ok_or_else(|| NetError::UnexpectedLink {
                    name: veth.to_string(),
                    reason: "vanished right after it was created".to_string(),
                })?;
        // Hairpin lets a pod reach itself through a hostPort of its own node.
        self.host
            .handle()
            .link()
            .set_port(LinkBridgePort::new(host_end.index).hairpin(true).build())
            .execute()
            .await
            .map_err(NetError::netlink(format!("enable hairpin on {veth}")))?;

        let pod = Netlink::connect(pod_ns).await?;
        let eth0 =
            pod.link_by_name(POD_INTERFACE)
                .await?
                .ok_or_else(|| NetError::UnexpectedLink {
                    name: POD_INTERFACE.to_string(),
                    reason: format!("missing in the namespace of pod {what} right after creation"),
                })?;
        match pod
            .handle()
            .address()
            .add(eth0.index, IpAddr::V4(ip), self.prefix_len)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(NetError::netlink(format!(
                    "add address {ip}/{} to {POD_INTERFACE} of pod {what}",
                    self.prefix_len
                ))(e))
            }
        }
        pod.set_up(eth0.index, &format!("{POD_INTERFACE} of pod {what}"))
            .await?;
        if let Some(lo) = pod.link_by_name("lo").await? {
            if !lo.up {
                pod.handle()
                    .link()
                    .set(LinkUnspec::new_with_index(lo.index).up().build())
                    .execute()
                    .await
                    .map_err(NetError::netlink(format!("set lo up in pod {what}")))?;
            }
        }
        pod.handle()
            .route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(self.gateway)
                    .output_interface(eth0.index)
                    .build(),
            )
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(format!(
                "add default route via {} in pod {what}",
                self.gateway
            )))?;
        Ok(())
    }
}

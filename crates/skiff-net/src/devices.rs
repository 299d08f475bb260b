//! The node-wide devices: finding the uplink, the pod bridge, and the VXLAN device.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVxlan};

use crate::netlink::{Link, Netlink};
use crate::NetError;

/// The interface carrying the node IP.
#[derive(Debug, Clone)]
pub(crate) struct Uplink {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
}

/// Finds the interface that holds `node_ip`.
pub(crate) async fn find_uplink(nl: &Netlink, node_ip: Ipv4Addr) -> Result<Uplink, NetError> {
    let addr = nl
        .ipv4_addresses(None)
        .await?
        .into_iter()
        .find(|a| a.addr == node_ip)
        .ok_or(NetError::NodeIpNotFound(node_ip))?;
    let link = nl
        .links()
        .await?
        .into_iter()
        .find(|l| l.index == addr.index)
        .ok_or(NetError::NodeIpNotFound(node_ip))?;
    Ok(Uplink {
        index: link.index,
        name: link.name,
        mtu: link.mtu.unwrap_or(1500),
    })
}

/// A locally administered unicast MAC derived from an IPv4 address (`0a:<tag>:a:b:c:d`), so a
/// device's MAC is stable across re-creation and a peer can compute it from the node IP alone.
pub(crate) fn mac_for(tag: u8, ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, tag, o[0], o[1], o[2], o[3]]
}

/// MAC tag of pod bridges (derived from the gateway address).
pub(crate) const BRIDGE_MAC_TAG: u8 = 0x59;
/// MAC tag of VXLAN devices (derived from the node IP).
pub(crate) const VTEP_MAC_TAG: u8 = 0x58;

/// Creates or adopts the pod bridge with the gateway address; returns its index.
pub(crate) async fn ensure_bridge(
    nl: &Netlink,
    name: &str,
    gateway: Ipv4Addr,
    prefix_len: u8,
    mtu: u32,
) -> Result<u32, NetError> {
    let index = match nl.link_by_name(name).await? {
        Some(link) => {
            if link.kind != Some(InfoKind::Bridge) {
                return Err(NetError::UnexpectedLink {
                    name: name.to_string(),
                    reason: format!(
                        "exists but is a {:?}, not a bridge; remove it or choose another bridge name",
                        link.kind
                    ),
                });
            }
            if link.mtu != Some(mtu) {
                set_mtu(nl, &link, mtu).await?;
            }
            link.index
        }
        None => {
            let message = LinkBridge::new(name)
                .mtu(mtu)
                .address(mac_for(BRIDGE_MAC_TAG, gateway).to_vec())
                .up()
                .build();
            nl.handle()
                .link()
                .add(message)
                .execute()
                .await
                .map_err(NetError::netlink(format!("create bridge {name}")))?;
            nl.link_by_name(name)
                .await?
                .ok_or_else(|| NetError::UnexpectedLink {
                    name: name.to_string(),
                    reason: "vanished right after it was created".to_string(),
                })?
                .index
        }
    };
    nl.set_only_ipv4(index, gateway, prefix_len, &format!("bridge {name}"))
        .await?;
    nl.set_up(index, &format!("bridge {name}")).await?;
    Ok(index)
}

async fn set_mtu(nl: &Netlink, link: &Link, mtu: u32) -> Result<(), NetError> {
    nl.handle()
        .link()
        .set(LinkUnspec::new_with_index(link.index).mtu(mtu).build())
        .execute()
        .await
        .map_err(NetError::netlink(format!("set MTU {mtu} on {}", link.name)))
}

/// Settings of a VXLAN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VxlanParams {
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub uplink: u32,
}

fn vxlan_params_of(link: &Link) -> Option<VxlanParams> {
    let mut params = VxlanParams {
        vni: 0,
        port: 0,
        local: Ipv4Addr::UNSPECIFIED,
        uplink: 0,
    };
    for attr in &link.message.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let LinkInfo::Data(InfoData::Vxlan(items)) = info {
                    for item in items {
                        match item {
                            InfoVxlan::Id(v) => params.vni = *v,
                            InfoVxlan::Port(p) => params.port = *p,
                            InfoVxlan::Local(ip) => params.local = *ip,
                            InfoVxlan::Link(i) => params.uplink = *i,
                            _ => {}
                        }
                    }
                    return Some(params);
                }
            }
        }
    }
    None
}

/// Creates (or re-creates, if its settings changed) the VXLAN device and gives it the pod
/// CIDR's network address as a /32, like flannel's `flannel.1`; returns its index.
pub(crate) async fn ensure_vxlan(
    nl: &Netlink,
    name: &str,
    params: VxlanParams,
    mtu: u32,
    vtep_addr: Ipv4Addr,
) -> Result<u32, NetError> {
    let mac = mac_for(VTEP_MAC_TAG, params.local);
    let mut existing = nl.link_by_name(name).await?;
    if let Some(link) = &existing {
        let same = link.kind == Some(InfoKind::Vxlan)
            && vxlan_params_of(link) == Some(params)
            && link.mac.as_deref() == Some(&mac[..]);
        if !same {
            if link.kind != Some(InfoKind::Vxlan) {
                return Err(NetError::UnexpectedLink {
                    name: name.to_string(),
                    reason: format!("exists but is a {:?}, not a VXLAN device", link.kind),
                });
            }
            tracing::info!(
                device = name,
                "VXLAN settings changed; re-creating the device"
            );
            nl.delete_link(link.index, name).await?;
            existing = None;
        }
    }
    let index = match existing {
        Some(link) => {
            if link.mtu != Some(mtu) {
                set_mtu(nl, &link, mtu).await?;
            }
            link.index
        }
        None => {
            let message = LinkVxlan::new(name, params.vni)
                .dev(params.uplink)
                .port(params.port)
                .local(params.local)
                .learning(false)
                .mtu(mtu)
                .address(mac.to_vec())
                .up()
                .build();
            nl.handle()
                .link()
                .add(message)
                .execute()
                .await
                .map_err(NetError::netlink(format!("create VXLAN device {name}")))?;
            nl.link_by_name(name)
                .await?
                .ok_or_else(|| NetError::UnexpectedLink {
                    name: name.to_string(),
                    reason: "vanished right after it was created".to_string(),
                })?
                .index
        }
    };
    nl.set_only_ipv4(index, vtep_addr, 32, &format!("VXLAN device {name}"))
        .await?;
    nl.set_up(index, &format!("VXLAN device {name}")).await?;
    Ok(index)
}

//! A route-netlink connection bound to one network namespace, with the few queries skiff-net
//! needs (links by name, addresses, routes, neighbours).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{FromRawFd, IntoRawFd};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::NeighbourMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::task::JoinHandle;

use crate::netns::NetNs;
use crate::NetError;

/// Route protocol number marking skiff's routes (`ip route show proto 77`), so they can be
/// found, reconciled and removed without touching anyone else's.
pub const SKIFF_ROUTE_PROTOCOL: u8 = 77;

/// Whether this process may open and bind a route-netlink socket, which every pod network
/// needs (for `skiff check-config`). The socket is closed again.
pub fn route_socket_usable() -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto().map(drop)
}

/// A netlink connection whose socket lives in one namespace.
pub(crate) struct Netlink {
    handle: Handle,
    driver: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The parts of a link message skiff-net looks at.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    pub controller: Option<u32>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub mac: Option<Vec<u8>>,
    pub message: LinkMessage,
}

impl Link {
    fn from_message(message: LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            kind: None,
            controller: None,
            mtu: None,
            up: message.header.flags.contains(LinkFlags::Up),
            mac: None,
            message: LinkMessage::default(),
        };
        for attr in &message.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Address(a) => link.mac = Some(a.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        link.message = message;
        link
    }
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkAddr {
    pub index: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// The kernel errno of a netlink error, if it carries one.
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a netlink socket inside `ns` and drives it on the current tokio runtime.
    pub(crate) async fn connect(ns: &NetNs) -> Result<Self, NetError> {
        let fd = ns
            .run(|| Socket::new(NETLINK_ROUTE).map(IntoRawFd::into_raw_fd))?
            .map_err(|source| NetError::Netns {
                path: ns.path().to_path_buf(),
                source,
            })?;
        // SAFETY: `fd` is a netlink socket we just created and own; ownership moves into the
        // TokioSocket (which also switches it to non-blocking mode).
        let socket = unsafe { TokioSocket::from_raw_fd(fd) };
        let (connection, handle, _messages) = rtnetlink::from_socket(socket);
        let driver = tokio::spawn(connection);
        Ok(Self { handle, driver })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// All links of the namespace.
    pub(crate) async fn links(&self) -> Result<Vec<Link>, NetError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NetError::netlink("list links"))?;
        Ok(messages.into_iter().map(Link::from_message).collect())
    }

    /// The link called `name`, if it exists.
    pub(crate) async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetError> {
        let result: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_collect()
            .await;
        match result {
            Ok(mut messages) => Ok(messages.pop().map(Link::from_message)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetError::netlink(format!("look up link {name}"))(e)),
        }
    }

    /// Deletes the link with `index`; a link that is already gone is not an error.
    pub(crate) async fn delete_link(&self, index: u32, name: &str) -> Result<(), NetError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(NetError::netlink(format!("delete link {name}"))(e)),
        }
    }

    /// Deletes the link called `name` if it exists; returns whether it did.
    pub(crate) async fn delete_link_by_name(&self, name: &str) -> Result<bool, NetError> {
        match self.link_by_name(name).await? {
            Some(link) => {
                self.delete_link(link.index, name).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// All IPv4 addresses of the namespace (or of one link).
    pub(crate) async fn ipv4_addresses(
        &self,
        index: Option<u32>,
    ) -> Result<Vec<LinkAddr>, NetError> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let messages: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(NetError::netlink("list addresses"))?;
        Ok(messages
            .into_iter()
            .filter(|m| m.header.family == AddressFamily::Inet)
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })?;
                Some(LinkAddr {
                    index: m.header.index,
                    addr,
                    prefix_len: m.header.prefix_len,
                })
            })
            .collect())
    }

    /// Makes `addr/prefix_len` the only IPv4 address of link `index`.
    pub(crate) async fn set_only_ipv4(
        &self,
        index: u32,
        addr: Ipv4Addr,
        prefix_len: u8,
        what: &str,
    ) -> Result<(), NetError> {
        self.set_ipv4_addresses(index, &[(addr, prefix_len)], what)
            .await
    }

    /// Makes `wanted` (address, prefix length) exactly the IPv4 addresses of link `index`.
    pub(crate) async fn set_ipv4_addresses(
        &self,
        index: u32,
        wanted: &[(Ipv4Addr, u8)],
        what: &str,
    ) -> Result<(), NetError> {
        let existing = self.ipv4_addresses(Some(index)).await?;
        let mut present = Vec::new();
        for a in existing {
            if wanted.contains(&(a.addr, a.prefix_len)) {
                present.push((a.addr, a.prefix_len));
                continue;
            }
            let mut msg = AddressMessage::default();
            msg.header.family = AddressFamily::Inet;
            msg.header.index = index;
            msg.header.prefix_len = a.prefix_len;
            msg.attributes
                .push(AddressAttribute::Local(IpAddr::V4(a.addr)));
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V4(a.addr)));
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(NetError::netlink(format!(
                    "remove stale address {}/{} from {what}",
                    a.addr, a.prefix_len
                )))?;
        }
        for &(addr, prefix_len) in wanted {
            if present.contains(&(addr, prefix_len)) {
                continue;
            }
            self.handle
                .address()
                .add(index, IpAddr::V4(addr), prefix_len)
                .execute()
                .await
                .map_err(NetError::netlink(format!(
                    "add address {addr}/{prefix_len} to {what}"
                )))?;
        }
        Ok(())
    }

    /// Sets link `index` up.
    pub(crate) async fn set_up(&self, index: u32, what: &str) -> Result<(), NetError> {
        self.handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(NetError::netlink(format!("set {what} up")))
    }

    /// IPv4 routes of the main table carrying skiff's protocol mark.
    pub(crate) async fn skiff_routes(&self) -> Result<Vec<RouteMessage>, NetError> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(NetError::netlink("list routes"))?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.protocol == RouteProtocol::Other(SKIFF_ROUTE_PROTOCOL))
            .filter(|r| r.header.kind == RouteType::Unicast)
            .collect())
    }

    /// Deletes a route; one that is already gone is not an error.
    pub(crate) async fn delete_route(&self, route: RouteMessage) -> Result<(), NetError> {
        let what = describe_route(&route);
        match self.handle.route().del(route).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(NetError::netlink(format!("delete route {what}"))(e)),
        }
    }

    /// Neighbour (ARP or FDB) entries of one link.
    pub(crate) async fn neighbours(
        &self,
        family: AddressFamily,
        index: u32,
    ) -> Result<Vec<NeighbourMessage>, NetError> {
        let entries: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(NetError::netlink("list neighbours"))?;
        Ok(entries
            .into_iter()
            .filter(|n| n.header.ifindex == index && n.header.family == family)
            .collect())
    }
}

/// The destination prefix and gateway of a route, for matching and messages.
pub(crate) fn route_destination(route: &RouteMessage) -> Option<(Ipv4Addr, u8)> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
            Some((*ip, route.header.destination_prefix_length))
        }
        _ => None,
    })
}

/// The IPv4 gateway of a route.
pub(crate) fn route_gateway(route: &RouteMessage) -> Option<Ipv4Addr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

/// The output interface of a route.
pub(crate) fn route_oif(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn describe_route(route: &RouteMessage) -> String {
    let dst = route_destination(route)
        .map(|(ip, len)| format!("{ip}/{len}"))
        .unwrap_or_else(|| "default".into());
    match route_gateway(route) {
        Some(gw) => format!("{dst} via {gw}"),
        None => dst,
    }
}

//! The Service addresses the node answers itself (`local_ips`: the cluster DNS address): a
//! local address makes the kernel deliver their packets to the node's own listener, and the
//! proxy never DNATs them. They go on `lo` as /32s labelled [`SERVICE_ADDRESS_LABEL`], which
//! marks them as skiff's (to reconcile and clean up) — `lo` always exists, while the `dummy`
//! driver kube-proxy's IPVS mode uses is missing from some kernels.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::AddressFamily;

use crate::netlink::Netlink;
use crate::NetError;

/// Label (`ip addr show label lo:skiff-svc`) of the Service addresses on `lo`.
pub const SERVICE_ADDRESS_LABEL: &str = "lo:skiff-svc";

async fn loopback(nl: &Netlink) -> Result<u32, NetError> {
    Ok(nl
        .link_by_name("lo")
        .await?
        .ok_or_else(|| NetError::UnexpectedLink {
            name: "lo".into(),
            reason: "the namespace has no loopback interface".into(),
        })?
        .index)
}

/// The labelled addresses on `lo` now.
async fn labelled(nl: &Netlink, lo: u32) -> Result<Vec<AddressMessage>, NetError> {
    let messages: Vec<AddressMessage> = nl
        .handle()
        .address()
        .get()
        .set_link_index_filter(lo)
        .execute()
        .try_collect()
        .await
        .map_err(NetError::netlink("list addresses of lo"))?;
    Ok(messages
        .into_iter()
        .filter(|m| m.header.family == AddressFamily::Inet)
        .filter(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Label(l) if l == SERVICE_ADDRESS_LABEL))
        })
        .collect())
}

fn address_of(m: &AddressMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
        _ => None,
    })
}

/// Makes `ips` (as /32s) exactly the labelled Service addresses on `lo`.
pub(crate) async fn ensure(nl: &Netlink, ips: &[Ipv4Addr]) -> Result<(), NetError> {
    let lo = loopback(nl).await?;
    let existing = labelled(nl, lo).await?;
    let mut present = Vec::new();
    for m in existing {
        match address_of(&m) {
            Some(ip) if ips.contains(&ip) => present.push(ip),
            other => {
                nl.handle()
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(NetError::netlink(format!(
                        "remove Service address {other:?} from lo"
                    )))?;
            }
        }
    }
    for ip in ips.iter().filter(|ip| !present.contains(ip)) {
        let mut request = nl.handle().address().add(lo, IpAddr::V4(*ip), 32);
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::Label(SERVICE_ADDRESS_LABEL.to_string()));
        request.execute().await.map_err(NetError::netlink(format!(
            "add Service address {ip}/32 to lo"
        )))?;
    }
    Ok(())
}

/// Removes the labelled Service addresses from `lo`; returns how many there were.
pub(crate) async fn remove(nl: &Netlink) -> Result<usize, NetError> {
    let lo = loopback(nl).await?;
    let existing = labelled(nl, lo).await?;
    let count = existing.len();
    for m in existing {
        nl.handle()
            .address()
            .del(m)
            .execute()
            .await
            .map_err(NetError::netlink("remove a Service address from lo"))?;
    }
    Ok(count)
}

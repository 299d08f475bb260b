//! What `skiff server` prints once it is up: how to use the cluster and how to join a node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

/// The address other machines reach this server at: `--advertise-address`, else a specific
/// `--bind-address`, else `detected` (the host's primary address), else the host name.
pub(crate) fn join_host(
    advertise: Option<IpAddr>,
    bind: IpAddr,
    detected: Option<IpAddr>,
    host_name: Option<&str>,
) -> String {
    let ip = advertise
        .or((!bind.is_unspecified()).then_some(bind))
        .or(detected);
    match (ip, host_name) {
        (Some(IpAddr::V6(ip)), _) => format!("[{ip}]"),
        (Some(ip), _) => ip.to_string(),
        (None, Some(name)) if !name.is_empty() => name.to_string(),
        (None, _) => Ipv4Addr::LOCALHOST.to_string(),
    }
}

/// The host's primary IPv4 address: the source address of the default route, found by
/// "connecting" a UDP socket (no packet is sent). `None` without a default route.
pub(crate) fn primary_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).ok()?;
    // TEST-NET-1 (RFC 5737): never routed anywhere, but the route lookup picks the uplink.
    socket
        .connect(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 9)))
        .ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// How the join token appears in the banner.
pub(crate) enum TokenShown<'a> {
    /// First start: the token itself.
    Value(&'a str),
    /// Later starts: where to read it (the token is not repeated in every start's log).
    File(&'a Path),
}

/// The banner: kubeconfig path, a kubectl line, and the exact `skiff agent` line.
pub(crate) fn text(kubeconfig: &Path, server_url: &str, token: TokenShown<'_>) -> String {
    let kubeconfig = kubeconfig.display();
    let token = match token {
        TokenShown::Value(token) => token.to_string(),
        TokenShown::File(path) => format!("<the token in {}>", path.display()),
    };
    format!(
        "skiff server is ready.\n\
         \x20 kubeconfig:  {kubeconfig}\n\
         \x20 use it:      KUBECONFIG={kubeconfig} kubectl get nodes\n\
         \x20 join a node: skiff agent --server {server_url} --token {token}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn join_host_prefers_advertised_then_bound_then_detected() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let lan: IpAddr = "10.0.0.5".parse().unwrap();
        let adv: IpAddr = "192.168.1.9".parse().unwrap();
        assert_eq!(join_host(Some(adv), lan, None, None), "192.168.1.9");
        assert_eq!(join_host(None, lan, Some(adv), None), "10.0.0.5");
        assert_eq!(join_host(None, any, Some(lan), Some("edge")), "10.0.0.5");
        assert_eq!(join_host(None, any, None, Some("edge")), "edge");
        assert_eq!(join_host(None, any, None, None), "127.0.0.1");
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(join_host(None, v6, None, None), "[::1]");
    }

    #[test]
    fn banner_names_kubeconfig_kubectl_and_the_join_line() {
        let text = text(
            Path::new("/var/lib/skiff/server/admin.kubeconfig"),
            "https://10.0.0.5:6443",
            TokenShown::Value("K10abc::server:secret"),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].ends_with("/var/lib/skiff/server/admin.kubeconfig"));
        assert!(lines[2]
            .ends_with("KUBECONFIG=/var/lib/skiff/server/admin.kubeconfig kubectl get nodes"));
        assert!(lines[3]
            .ends_with("skiff agent --server https://10.0.0.5:6443 --token K10abc::server:secret"));
        let later = super::text(
            Path::new("/d/server/admin.kubeconfig"),
            "https://10.0.0.5:6443",
            TokenShown::File(Path::new("/d/server/node-token")),
        );
        assert!(
            later.contains("--token <the token in /d/server/node-token>"),
            "{later}"
        );
    }
}

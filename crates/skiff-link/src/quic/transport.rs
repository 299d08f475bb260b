//! QUIC transport settings, endpoint construction and server URL parsing.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::{EndpointConfig, IdleTimeout, TransportConfig, VarInt};

use super::LinkError;

/// Default port of the node link (the API's port number, over UDP).
pub(super) const DEFAULT_PORT: u16 = 6443;
/// QUIC keep-alive interval: a packet at least this often when nothing else is sent.
pub(super) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A connection without any packet for this long is dead.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// A parsed `--server https://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP address (without brackets), also the TLS server name.
    pub host: String,
    /// UDP port of the node link.
    pub port: u16,
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

impl ServerUrl {
    /// Resolves the host to socket addresses.
    pub async fn resolve(&self) -> Result<SocketAddr, LinkError> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| LinkError::Resolve {
                host: self.host.clone(),
                source,
            })?;
        addrs.next().ok_or_else(|| LinkError::Resolve {
            host: self.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
        })
    }
}

/// Parses `https://HOST[:PORT][/]` (port 6443 by default).
pub fn parse_server_url(url: &str) -> Result<ServerUrl, LinkError> {
    let invalid = |reason: &str| LinkError::InvalidServerUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .trim()
        .strip_prefix("https://")
        .ok_or_else(|| invalid("it must start with https://"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') || authority.contains('@') {
        return Err(invalid("expected https://HOST:PORT with no path"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unclosed '[' in an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("expected ':' after the IPv6 address"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
    };
    Ok(ServerUrl { host, port })
}

/// Transport settings shared by both sides. `peer_bidi_streams` limits how many bidirectional
/// streams the peer may have open at once (the server allows agents one: the control stream).
pub(crate) fn transport_config(peer_bidi_streams: u32) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(IDLE_TIMEOUT)
                .unwrap_or(IdleTimeout::from(VarInt::from_u32(45_000))),
        ))
        .max_concurrent_bidi_streams(VarInt::from_u32(peer_bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        // Small windows: control traffic is small, and 5,000 connections must fit in memory.
        .stream_receive_window(VarInt::from_u32(1 << 20))
        .receive_window(VarInt::from_u32(4 << 20))
        .send_window(4 << 20)
        .datagram_receive_buffer_size(None);
    transport
}

/// Endpoint settings whose stateless-reset key derives from `secret`, so a restarted server
/// answers its predecessor's connections with valid stateless resets and agents reconnect at
/// once instead of waiting for the idle timeout.
pub(crate) fn endpoint_config(secret: &[u8; 32]) -> EndpointConfig {
    let mut config = EndpointConfig::new(Arc::new(ResetKey(*secret)));
    config.cid_generator(|| Box::new(RandomCids));
    config
}

/// HMAC-SHA256 with a fixed key: quinn's stateless-reset token generator.
struct ResetKey([u8; 32]);

impl ResetKey {
    fn mac(&self, data: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        const BLOCK: usize = 64;
        let mut inner_pad = [0x36u8; BLOCK];
        let mut outer_pad = [0x5cu8; BLOCK];
        for (i, byte) in self.0.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let inner = Sha256::new()
            .chain_update(inner_pad)
            .chain_update(data)
            .finalize();
        let outer = Sha256::new()
            .chain_update(outer_pad)
            .chain_update(inner)
            .finalize();
        let mut out = [0u8; 32];
        out.copy_from_slice(&outer);
        out
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let mac = self.mac(data);
        let n = signature_out.len().min(mac.len());
        signature_out[..n].copy_from_slice(&mac[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let mac = self.mac(data);
        let equal = signature.len() == mac.len()
            && mac
                .iter()
                .zip(signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if equal {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

/// Random 8-byte connection ids that every endpoint accepts as plausible, so packets for
/// connections of a previous server process are answered with a stateless reset.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let bytes: [u8; 8] = rand::random();
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// An unspecified local address of the same family as `remote`.
pub(crate) fn any_local_for(remote: &SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_key_is_hmac_sha256() {
        use quinn::crypto::HmacKey;
        // RFC 4231 test case 2 uses a short key; ours is fixed at 32 bytes, so check
        // self-consistency and key dependence instead.
        let a = ResetKey([1; 32]);
        let b = ResetKey([2; 32]);
        let mut sig = [0u8; 32];
        a.sign(b"cid", &mut sig);
        assert!(a.verify(b"cid", &sig).is_ok());
        assert!(b.verify(b"cid", &sig).is_err());
        assert!(a.verify(b"cie", &sig).is_err());
    }

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            parse_server_url("https://10.0.0.1:7443").unwrap(),
            ServerUrl {
                host: "10.0.0.1".into(),
                port: 7443
            }
        );
        assert_eq!(parse_server_url("https://srv/").unwrap().port, 6443);
        assert_eq!(
            parse_server_url("https://[fd00::1]:6443").unwrap().host,
            "fd00::1"
        );
        for bad in [
            "http://x:1",
            "https://:1",
            "https://x:0",
            "https://x:99999",
            "https://x:1/path",
            "x:1",
        ] {
            let err = parse_server_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}

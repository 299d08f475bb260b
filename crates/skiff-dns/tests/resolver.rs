//! The cluster resolver over real sockets on 127.0.0.1: cluster records, forwarding to an
//! upstream run here (standing in for the internet), the cache, serve-stale, and hostile input.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_dns::{ClusterDns, DnsConfig};
use skiff_link_proto::proto::service::{
    EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary, ServiceSummary,
    ServiceType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// A small upstream on a loopback UDP port: `*.example.org` A 192.0.2.1 with `ttl`,
/// `nx.example.org` NXDOMAIN with an SOA (minimum 60). Counts the questions it gets.
struct FakeUpstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    async fn start(ttl: u32) -> FakeUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut response =
                    Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
                response.metadata.recursion_available = true;
                response.queries = request.queries.clone();
                let query = &request.queries[0];
                let origin = Name::from_ascii("example.org.").unwrap();
                if query.name().to_ascii().starts_with("nx.") {
                    response.metadata.response_code = ResponseCode::NXDomain;
                    response.add_authority(Record::from_rdata(
                        origin.clone(),
                        300,
                        RData::SOA(SOA::new(origin.clone(), origin, 1, 1, 1, 1, 60)),
                    ));
                } else if query.query_type() == RecordType::A {
                    response.add_answer(Record::from_rdata(
                        query.name().clone(),
                        ttl,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        FakeUpstream { addr, asked, task }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    /// The upstream goes away (its port then refuses).
    fn stop(self) {
        self.task.abort();
    }
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn services(headless_endpoints: usize) -> Vec<ServiceSummary> {
    let endpoint = |i: usize, hostname: Option<String>| EndpointSummary {
        addresses: vec![format!("10.42.{}.{}", i / 200, i % 200 + 1)],
        hostname,
        ready: true,
        serving: true,
        ports: vec![EndpointPortSummary {
            name: "pg".into(),
            protocol: "TCP".into(),
            port: 5432,
        }],
        ..Default::default()
    };
    vec![
        ServiceSummary {
            key: key("default", "web"),
            cluster_ips: vec!["10.43.0.20".into()],
            ports: vec![ServicePortSummary {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
                node_port: None,
            }],
            ..Default::default()
        },
        ServiceSummary {
            key: key("db", "pg"),
            headless: true,
            ports: vec![ServicePortSummary {
                name: "pg".into(),
                protocol: "TCP".into(),
                port: 5432,
                node_port: None,
            }],
            endpoints: (0..headless_endpoints)
                .map(|i| endpoint(i, (i == 0).then(|| "pg-0".to_string())))
                .collect(),
            ..Default::default()
        },
        ServiceSummary {
            key: key("default", "ext"),
            service_type: ServiceType::ExternalName,
            external_name: Some("www.example.org".into()),
            ..Default::default()
        },
    ]
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstreams,
        upstream_timeout: Duration::from_millis(1500),
        ..Default::default()
    }
}

async fn start(upstreams: Vec<SocketAddr>, headless_endpoints: usize) -> (ClusterDns, SocketAddr) {
    start_with(config(upstreams), headless_endpoints).await
}

async fn start_with(config: DnsConfig, headless_endpoints: usize) -> (ClusterDns, SocketAddr) {
    let dns = ClusterDns::start(config).await.unwrap();
    dns.update(&services(headless_endpoints));
    let addr = dns.local_addrs()[0];
    (dns, addr)
}

fn request(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut request = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        request.set_edns(e);
    }
    request
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u16
}

/// One UDP exchange; `None` when nothing comes back within `wait`.
async fn udp_wait(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::from_vec(&buf[..n]).expect("the resolver sent a valid message"))
}

/// One UDP exchange expected to be answered (`None` after 3 s).
async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    udp_wait(addr, bytes, Duration::from_secs(3)).await
}

/// Whether anything comes back for `bytes` (on loopback an answer takes microseconds; the
/// server answers queries in order, so a later valid query shows it is alive).
async fn answered(addr: SocketAddr, bytes: &[u8]) -> bool {
    udp_wait(addr, bytes, Duration::from_millis(300))
        .await
        .is_some()
}

async fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let request = request(name, qtype, true);
    let response = udp_raw(addr, &request.to_vec().unwrap())
        .await
        .unwrap_or_else(|| panic!("no answer to {name} {qtype}"));
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

async fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let bytes = request(name, qtype, false).to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn rdata(response: &Message) -> Vec<String> {
    let mut v: Vec<String> = response
        .answers
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn service_a_srv_and_ptr() {
    let (_dns, addr) = start(Vec::new(), 2).await;
    let a = udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&a), ["10.43.0.20"]);
    assert!(a.metadata.authoritative);
    assert_eq!(a.answers[0].ttl, skiff_dns::ZONE_TTL);
    let srv = udp(
        addr,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(rdata(&srv), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(srv.additionals.len(), 1, "the target's address comes along");
    let ptr = udp(addr, "20.0.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(rdata(&ptr), ["web.default.svc.cluster.local."]);
    let pod = udp(addr, "10-42-0-9.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&pod), ["10.42.0.9"]);
}

#[tokio::test]
async fn headless_service_answers_its_ready_endpoints() {
    let (_dns, addr) = start(Vec::new(), 2).await;
    let a = udp(addr, "pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&a), ["10.42.0.1", "10.42.0.2"]);
    let host = udp(addr, "pg-0.pg.db.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&host), ["10.42.0.1"]);
    let srv = udp(addr, "_pg._tcp.pg.db.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        rdata(&srv),
        [
            "0 50 5432 10-42-0-2.pg.db.svc.cluster.local.",
            "0 50 5432 pg-0.pg.db.svc.cluster.local."
        ]
    );
    let ptr = udp(addr, "1.0.42.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(rdata(&ptr), ["pg-0.pg.db.svc.cluster.local."]);
}

#[tokio::test]
async fn missing_names_are_nxdomain_with_the_soa() {
    let (_dns, addr) = start(Vec::new(), 1).await;
    let nx = udp(addr, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    let soa = &nx.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(soa.ttl, 5);
    // A name that exists without the asked type: NOERROR, no answers, the SOA.
    let nodata = udp(addr, "web.default.svc.cluster.local.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn external_name_is_a_cname_followed_through_the_upstream() {
    let upstream = FakeUpstream::start(300).await;
    let (_dns, addr) = start(vec![upstream.addr], 1).await;
    let a = udp(addr, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a.answers[0].data.to_string(), "www.example.org.");
    assert_eq!(a.answers[1].record_type(), RecordType::A);
    assert_eq!(a.answers[1].data.to_string(), "192.0.2.1");
    assert_eq!(upstream.asked(), 1);
}

#[tokio::test]
async fn other_names_are_forwarded_and_cached() {
    let upstream = FakeUpstream::start(300).await;
    let (_dns, addr) = start(vec![upstream.addr], 1).await;
    let first = udp(addr, "www.example.org.", RecordType::A).await;
    assert_eq!(rdata(&first), ["192.0.2.1"]);
    assert!(first.metadata.recursion_available);
    assert!(!first.metadata.authoritative);
    assert_eq!(upstream.asked(), 1);
    // The second question (in other case, over TCP) is the cache's.
    let second = tcp(addr, "WWW.example.ORG.", RecordType::A).await;
    assert_eq!(rdata(&second), ["192.0.2.1"]);
    assert!(second.answers[0].ttl <= 300);
    assert_eq!(upstream.asked(), 1, "answered from the cache");
    // A negative answer is cached too (for the SOA minimum).
    for _ in 0..2 {
        let nx = udp(addr, "nx.example.org.", RecordType::A).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    }
    assert_eq!(upstream.asked(), 2);
    // Reverse names the zone does not know are forwarded as well.
    let _ = udp(addr, "1.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(upstream.asked(), 3);
}

#[tokio::test]
async fn expired_answers_are_served_stale_while_the_upstream_is_gone() {
    let upstream = FakeUpstream::start(1).await;
    let (_dns, addr) = start(vec![upstream.addr], 1).await;
    assert_eq!(
        rdata(&udp(addr, "www.example.org.", RecordType::A).await),
        ["192.0.2.1"]
    );
    upstream.stop();
    // Once the 1-second TTL has passed the answer can only come from the stale cache, with
    // the stale TTL (30 s); meanwhile it is the fresh cache's (TTL 1).
    let stale =
        skiff_testkit::wait::wait_for(Duration::from_secs(10), "a stale answer", || async {
            let response = udp(addr, "www.example.org.", RecordType::A).await;
            assert_eq!(
                response.metadata.response_code,
                ResponseCode::NoError,
                "{response:?}"
            );
            (response.answers.first().map(|r| r.ttl) == Some(30)).then_some(response)
        })
        .await;
    assert_eq!(rdata(&stale), ["192.0.2.1"]);
    // A name never resolved before has nothing stale: SERVFAIL.
    let unknown = udp(addr, "other.example.org.", RecordType::A).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn a_large_answer_over_udp_sets_tc_and_comes_whole_over_tcp() {
    let (_dns, addr) = start(Vec::new(), 120).await;
    // No EDNS: 512 bytes at most.
    let small = request("pg.db.svc.cluster.local.", RecordType::A, false);
    let cut = udp_raw(addr, &small.to_vec().unwrap()).await.unwrap();
    assert!(cut.metadata.truncation);
    assert!(cut.answers.is_empty());
    // With EDNS (1232 bytes) it still does not fit; over TCP it does.
    let cut = udp(addr, "pg.db.svc.cluster.local.", RecordType::A).await;
    assert!(cut.metadata.truncation);
    let whole = tcp(addr, "pg.db.svc.cluster.local.", RecordType::A).await;
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 120);
}

#[tokio::test]
async fn malformed_datagrams_are_dropped_and_the_server_goes_on() {
    let (_dns, addr) = start(Vec::new(), 1).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for garbage in [
        &b""[..],
        b"\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0x41; 3000],
    ] {
        socket.send_to(garbage, addr).await.unwrap();
    }
    // A header claiming a question that is not there.
    let mut truncated = request("web.default.svc.cluster.local.", RecordType::A, false)
        .to_vec()
        .unwrap();
    truncated.truncate(20);
    assert!(
        !answered(addr, &truncated).await,
        "no answer to a cut message"
    );
    // A response (QR set) is never answered: two resolvers must not bounce it forever.
    let mut response = request("web.default.svc.cluster.local.", RecordType::A, false);
    response.metadata.message_type = MessageType::Response;
    assert!(!answered(addr, &response.to_vec().unwrap()).await);
    let a = udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&a), ["10.43.0.20"]);
}

#[tokio::test]
async fn an_oversized_tcp_message_closes_the_connection_unread() {
    let (_dns, addr) = start(Vec::new(), 1).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_u16(65535).await.unwrap();
    stream.write_all(&[0u8; 1024]).await.unwrap();
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server closes the connection at once");
    assert!(matches!(read, Ok(0) | Err(_)), "no answer: {read:?}");
    let a = tcp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&a), ["10.43.0.20"]);
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    let (_dns, addr) = start_with(
        DnsConfig {
            max_tcp_connections: 2,
            tcp_idle_timeout: Duration::from_millis(300),
            ..config(Vec::new())
        },
        1,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Give the server the two accepts before the third connection arrives: each idle
    // connection ends after 300 ms, so a third opened now is turned away at once.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(Duration::from_millis(250), third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection is closed at once: {read:?}"
    );
    // The idle ones are closed by the server.
    for mut stream in held {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the idle connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)));
    }
    // And the slots are free again.
    skiff_testkit::wait::wait_for(Duration::from_secs(5), "a free TCP slot", || async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let bytes = request("web.default.svc.cluster.local.", RecordType::A, false)
            .to_vec()
            .unwrap();
        stream.write_u16(bytes.len() as u16).await.ok()?;
        stream.write_all(&bytes).await.ok()?;
        stream.read_u16().await.ok()
    })
    .await;
}

#[tokio::test]
async fn forwarded_queries_in_flight_are_capped() {
    // An upstream that never answers holds each forwarded query for the whole timeout.
    let black_hole = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (_dns, addr) = start_with(
        DnsConfig {
            max_in_flight: 2,
            upstream_timeout: Duration::from_secs(20),
            ..config(vec![black_hole.local_addr().unwrap()])
        },
        1,
    )
    .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..2 {
        let bytes = request(&format!("slow{i}.example.org."), RecordType::A, false)
            .to_vec()
            .unwrap();
        socket.send_to(&bytes, addr).await.unwrap();
    }
    // Both slots are taken once the black hole has seen both questions.
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), black_hole.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
    }
    let started = std::time::Instant::now();
    let third = udp(addr, "slow2.example.org.", RecordType::A).await;
    assert_eq!(third.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once, not queued"
    );
    // Cluster names do not need a slot.
    let a = udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&a), ["10.43.0.20"]);
}

#[tokio::test]
async fn update_swaps_the_zone() {
    let (dns, addr) = start(Vec::new(), 1).await;
    assert_eq!(
        rdata(&udp(addr, "web.default.svc.cluster.local.", RecordType::A).await),
        ["10.43.0.20"]
    );
    dns.update(&[]);
    let nx = udp(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let _ = IpAddr::from([0u8; 4]);
}

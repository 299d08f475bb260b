//! Random bytes and mutated queries through the whole synchronous query path (parse, zone,
//! cache, encode) without the server's `catch_unwind`, so a panic fails the property.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;

use crate::cache::Cache;
use crate::resolve::{Resolver, Step};
use crate::zone::Zone;

fn resolver() -> Resolver {
    let domain = Name::from_ascii("cluster.local.").unwrap();
    let services = crate::zone::tests::services();
    Resolver {
        zone: RwLock::new(Arc::new(Zone::build(&domain, &[], &services))),
        domain,
        cache: Mutex::new(Cache::new(16, Duration::from_secs(60))),
        upstreams: Vec::new(),
        upstream_timeout: Duration::from_millis(1),
        panic_on: Mutex::new(None),
    }
}

/// What the path does with `packet`: nothing, or a response that parses back with the
/// request's ID.
fn check(resolver: &Resolver, packet: &[u8]) {
    let Ok(request) = Message::from_vec(packet) else {
        return;
    };
    let response = match resolver.answer_local(&request) {
        Step::Drop => return,
        Step::Reply(response) | Step::Forward { response, .. } => response,
    };
    let limit = usize::from(request.max_payload()).max(512);
    let bytes = crate::server::encode(&response, limit);
    assert!(
        bytes.len() <= limit,
        "{} bytes over a {limit}-byte limit",
        bytes.len()
    );
    let parsed = Message::from_vec(&bytes).expect("our response parses");
    assert_eq!(parsed.metadata.id, request.metadata.id);
    assert_eq!(parsed.metadata.message_type, MessageType::Response);
}

fn config() -> proptest::test_runner::Config {
    skiff_testkit::fuzz::config(
        512,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&resolver(), &packet);
    }

    #[test]
    fn mutated_queries_never_panic(
        labels in proptest::collection::vec("[a-z0-9-]{1,12}", 0..6),
        tail in prop_oneof![
            Just("svc.cluster.local."), Just("pod.cluster.local."), Just("cluster.local."),
            Just("default.svc.cluster.local."), Just("in-addr.arpa."), Just("ip6.arpa."),
            Just("example.org."),
        ],
        qtype in any::<u16>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let name = format!("{}{}{tail}", labels.join("."), if labels.is_empty() { "" } else { "." });
        let Ok(name) = Name::from_ascii(&name) else { return Ok(()) };
        let mut request = Message::new(42, MessageType::Query, OpCode::Query);
        request.add_query(Query::query(name, RecordType::from(qtype)));
        let mut bytes = request.to_vec().unwrap();
        check(&resolver(), &bytes);
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] ^= value;
        }
        check(&resolver(), &bytes);
    }
}

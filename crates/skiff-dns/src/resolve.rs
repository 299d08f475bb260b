//! From a parsed request to a response: the zone and the cache answer synchronously (the
//! server calls this inline, inside `catch_unwind`); what needs an upstream becomes a
//! [`Step::Forward`] that the server runs in a bounded task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::cache::{Cache, Key};
use crate::upstream::{self, EDNS_PAYLOAD};
use crate::zone::{Lookup, Zone};

/// How many CNAMEs inside the cluster zone are followed before giving up (ExternalName
/// pointing at another ExternalName...).
const MAX_CHAIN: usize = 8;

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send nothing (a response, not a query: answering it could start a loop).
    Drop,
    /// Send this.
    Reply(Message),
    /// Ask the upstreams `query`; `response` holds what is already known (the question, and
    /// the CNAME chain when following an ExternalName out of the cluster).
    Forward { response: Message, query: Query },
}

/// The resolver's state shared by the UDP and TCP servers.
#[derive(Debug)]
pub(crate) struct Resolver {
    pub(crate) domain: Name,
    pub(crate) zone: RwLock<Arc<Zone>>,
    pub(crate) cache: Mutex<Cache>,
    pub(crate) upstreams: Vec<SocketAddr>,
    pub(crate) upstream_timeout: Duration,
    /// A question whose name makes the resolver panic (tests of panic containment only).
    #[cfg(test)]
    pub(crate) panic_on: Mutex<Option<Name>>,
}

impl Resolver {
    fn zone(&self) -> Arc<Zone> {
        match self.zone.read() {
            Ok(zone) => zone.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The synchronous part: validate, answer from the zone or a fresh cache entry.
    pub(crate) fn answer_local(&self, request: &Message) -> Step {
        if request.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        let mut response = response_to(request);
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return Step::Reply(response);
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return Step::Reply(response);
        };
        #[cfg(test)]
        if self
            .panic_on
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|n| n == query.name())
        {
            panic!("test: panic on {}", query.name());
        }
        if query.query_class() != DNSClass::IN
            || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
        {
            response.metadata.response_code = ResponseCode::Refused;
            return Step::Reply(response);
        }
        let zone = self.zone();
        let mut name = query.name().clone();
        for _ in 0..MAX_CHAIN {
            match zone.lookup(&name, query.query_type()) {
                Lookup::Answer {
                    answers,
                    additionals,
                } => {
                    response.metadata.authoritative = true;
                    response.answers.extend(answers);
                    response.additionals.extend(additionals);
                    return Step::Reply(response);
                }
                Lookup::NoData => {
                    response.metadata.authoritative = true;
                    response.authorities.push(zone.soa().clone());
                    return Step::Reply(response);
                }
                Lookup::NxDomain => {
                    response.metadata.authoritative = true;
                    response.metadata.response_code = ResponseCode::NXDomain;
                    response.authorities.push(zone.soa().clone());
                    return Step::Reply(response);
                }
                Lookup::Alias { cname, target } => {
                    response.metadata.authoritative = true;
                    response.answers.push(*cname);
                    name = target;
                }
                Lookup::NotOurs => {
                    let forwarded = Query::query(name, query.query_type());
                    let forwarded = forwarded_with_class(forwarded, query.query_class());
                    if let Some(cached) = self.cache().get(&key(&forwarded), Instant::now()) {
                        merge(&mut response, cached);
                        return Step::Reply(response);
                    }
                    return Step::Forward {
                        response,
                        query: forwarded,
                    };
                }
            }
        }
        // A loop of aliases inside the zone.
        response.metadata.response_code = ResponseCode::ServFail;
        Step::Reply(response)
    }

    /// The asynchronous part: ask the upstreams, cache what they say, and while they do not
    /// answer, serve the stale cache entry (RFC 8767) or SERVFAIL.
    pub(crate) async fn answer_remote(&self, mut response: Message, query: Query) -> Message {
        let key = key(&query);
        match upstream::forward(&self.upstreams, &query, self.upstream_timeout).await {
            Ok(answer) => {
                self.cache().insert(key, &answer, Instant::now());
                response.metadata.response_code = answer.metadata.response_code;
                response.answers.extend(answer.answers);
                response.authorities.extend(answer.authorities);
                response.additionals.extend(answer.additionals);
            }
            Err(e) => match self.cache().get_stale(&key, Instant::now()) {
                Some(stale) => {
                    tracing::debug!(name = %query.name(), error = %e, "cluster DNS: serving a stale answer");
                    merge(&mut response, stale);
                }
                None => {
                    tracing::debug!(name = %query.name(), error = %e, "cluster DNS: upstreams did not answer");
                    response.metadata.response_code = ResponseCode::ServFail;
                }
            },
        }
        response
    }
}

/// The response skeleton: the request's ID, RD and CD, its question, RA, and an OPT record
/// (with our payload size) when the request had one.
pub(crate) fn response_to(request: &Message) -> Message {
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

fn forwarded_with_class(mut query: Query, class: DNSClass) -> Query {
    query.set_query_class(class);
    query
}

fn key(query: &Query) -> Key {
    let mut name = query.name().to_lowercase();
    name.set_fqdn(true);
    (name, query.query_type(), query.query_class())
}

fn merge(response: &mut Message, cached: crate::cache::Cached) {
    response.metadata.response_code = cached.response_code;
    response.answers.extend(cached.answers);
    response.authorities.extend(cached.authorities);
    response.additionals.extend(cached.additionals);
}

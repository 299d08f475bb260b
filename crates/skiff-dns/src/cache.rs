//! The bounded cache of forwarded answers: positive answers for their TTL, negative ones for the
//! SOA minimum (RFC 2308), and expired ones kept for serve-stale (RFC 8767) while the upstreams
//! do not answer.
//!
//! Bounded by entry count with first-in-first-out eviction: cheap, and a flood of distinct
//! names only evicts, it never grows memory.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// TTL of an answer served stale (RFC 8767 recommends 30 s).
pub(crate) const STALE_TTL: u32 = 30;

/// Longest any forwarded answer is kept fresh (CoreDNS's cache default).
const MAX_TTL: u32 = 3600;

/// A question, as the cache keys it: fully qualified name (compared without case), type, class.
pub(crate) type Key = (Name, RecordType, DNSClass);

/// One cached response.
#[derive(Debug, Clone)]
struct Entry {
    response_code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    ttl: u32,
}

/// A cached response ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) response_code: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

/// The cache (behind the server's mutex).
#[derive(Debug)]
pub(crate) struct Cache {
    capacity: usize,
    max_stale: Duration,
    entries: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl Cache {
    pub(crate) fn new(capacity: usize, max_stale: Duration) -> Cache {
        Cache {
            capacity,
            max_stale,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A fresh answer, its TTLs lowered by its age.
    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        let age = now.saturating_duration_since(entry.stored).as_secs() as u32;
        (age < entry.ttl).then(|| entry.cached(|ttl| ttl.saturating_sub(age).max(1)))
    }

    /// An answer past its TTL but within `max_stale`, with TTL [`STALE_TTL`].
    pub(crate) fn get_stale(&self, key: &Key, now: Instant) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        let expires = entry.stored + Duration::from_secs(u64::from(entry.ttl));
        (now.saturating_duration_since(expires) <= self.max_stale)
            .then(|| entry.cached(|_| STALE_TTL))
    }

    /// Stores an upstream response if it is cacheable: NOERROR with answers (for the least
    /// TTL), or NXDOMAIN / NODATA with an SOA (for min(SOA TTL, SOA minimum)). Truncated and
    /// failed responses are not stored.
    pub(crate) fn insert(&mut self, key: Key, response: &Message, now: Instant) {
        if self.capacity == 0 || response.metadata.truncation {
            return;
        }
        let ttl = match response.metadata.response_code {
            ResponseCode::NoError if !response.answers.is_empty() => {
                response.answers.iter().map(|r| r.ttl).min()
            }
            ResponseCode::NoError | ResponseCode::NXDomain => negative_ttl(response),
            _ => None,
        };
        let Some(ttl) = ttl.map(|t| t.min(MAX_TTL)).filter(|t| *t > 0) else {
            return;
        };
        let entry = Entry {
            response_code: response.metadata.response_code,
            answers: response.answers.clone(),
            authorities: response.authorities.clone(),
            additionals: response.additionals.clone(),
            stored: now,
            ttl,
        };
        if self.entries.insert(key.clone(), entry).is_none() {
            self.order.push_back(key);
            while self.entries.len() > self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.entries.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Entry {
    fn cached(&self, ttl: impl Fn(u32) -> u32) -> Cached {
        let adjust = |records: &[Record]| {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = ttl(r.ttl);
                    r
                })
                .collect()
        };
        Cached {
            response_code: self.response_code,
            answers: adjust(&self.answers),
            authorities: adjust(&self.authorities),
            additionals: adjust(&self.additionals),
        }
    }
}

/// RFC 2308 §5: a negative answer is cached for the lesser of the SOA's TTL and its minimum.
fn negative_ttl(response: &Message) -> Option<u32> {
    response.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};

    fn key(name: &str) -> Key {
        (Name::from_ascii(name).unwrap(), RecordType::A, DNSClass::IN)
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            Name::from_ascii("a.example.").unwrap(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    }

    fn negative(soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let origin = Name::from_ascii("example.").unwrap();
        m.add_authority(Record::from_rdata(
            origin.clone(),
            soa_ttl,
            RData::SOA(SOA::new(origin.clone(), origin, 1, 1, 1, 1, minimum)),
        ));
        m
    }

    #[test]
    fn positive_answers_live_for_their_ttl_then_go_stale() {
        let mut cache = Cache::new(10, Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert(key("a"), &answer(100), t0);
        let hit = cache.get(&key("a"), t0 + Duration::from_secs(40)).unwrap();
        assert_eq!(hit.answers[0].ttl, 60, "TTL lowered by the age");
        assert!(cache
            .get(&key("a"), t0 + Duration::from_secs(100))
            .is_none());
        let stale = cache
            .get_stale(&key("a"), t0 + Duration::from_secs(150))
            .unwrap();
        assert_eq!(stale.answers[0].data.to_string(), "192.0.2.1");
        assert_eq!(stale.answers[0].ttl, STALE_TTL);
        assert!(cache
            .get_stale(&key("a"), t0 + Duration::from_secs(161))
            .is_none());
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum() {
        let mut cache = Cache::new(10, Duration::ZERO);
        let t0 = Instant::now();
        cache.insert(key("n"), &negative(3600, 30), t0);
        assert_eq!(
            cache
                .get(&key("n"), t0 + Duration::from_secs(29))
                .unwrap()
                .response_code,
            ResponseCode::NXDomain
        );
        assert!(cache.get(&key("n"), t0 + Duration::from_secs(31)).is_none());
        // Without an SOA a negative answer is not cached; neither is SERVFAIL.
        let mut bare = negative(1, 1);
        bare.authorities.clear();
        cache.insert(key("bare"), &bare, t0);
        let mut failed = answer(100);
        failed.metadata.response_code = ResponseCode::ServFail;
        cache.insert(key("failed"), &failed, t0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let mut cache = Cache::new(3, Duration::ZERO);
        let t0 = Instant::now();
        for i in 0..100 {
            cache.insert(key(&format!("n{i}")), &answer(100), t0);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(&key("n99"), t0).is_some());
        assert!(cache.get(&key("n0"), t0).is_none());
    }
}

//! The scheduling queue (upstream `PriorityQueue`): an active queue ordered by priority then
//! arrival, a back-off queue for pods that failed recently, and the unschedulable pods, which
//! wait until a cluster change (a node added or changed, a pod removed) may let them fit —
//! or at most [`QueueConfig::max_unschedulable`] — and then go back through back-off.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::podinfo::{PodInfo, SchedPod};

/// Timings of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Back-off after the first failed attempt (upstream 1 s).
    pub initial_backoff: Duration,
    /// Longest back-off (upstream 10 s).
    pub max_backoff: Duration,
    /// Longest stay among the unschedulable pods without a cluster change (upstream 5 min).
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

/// A pod in the queue.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The pod as last seen.
    pub pod: Arc<SchedPod>,
    /// Its parsed requirements.
    pub info: Arc<PodInfo>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it first entered the queue (for latency figures).
    pub queued_at: Instant,
    location: Location,
    ready_at: Instant,
    since: Instant,
    generation: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveEntry {
    priority: i32,
    seq: u64,
    uid: Arc<str>,
    generation: u64,
}

impl Ord for ActiveEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then lower sequence (earlier) first.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Ready time, sequence, uid, generation.
type BackoffEntry = (Instant, u64, Arc<str>, u64);

/// The queue.
#[derive(Debug)]
pub struct Queue {
    config: QueueConfig,
    pods: HashMap<Arc<str>, QueuedPod>,
    active: BinaryHeap<ActiveEntry>,
    backoff: BinaryHeap<Reverse<BackoffEntry>>,
    seq: u64,
    unschedulable: usize,
}

impl Queue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            unschedulable: 0,
        }
    }

    /// Pods known to the queue (any state).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the queue holds no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Pods waiting for a cluster change.
    pub fn unschedulable_count(&self) -> usize {
        self.unschedulable
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn set_location(&mut self, uid: &Arc<str>, location: Location, now: Instant) {
        let seq = self.next_seq();
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        if q.location == Location::Unschedulable {
            self.unschedulable -= 1;
        }
        q.location = location;
        q.generation = seq;
        match location {
            Location::Active => self.active.push(ActiveEntry {
                priority: q.info.priority,
                seq,
                uid: uid.clone(),
                generation: seq,
            }),
            Location::Backoff => self
                .backoff
                .push(Reverse((q.ready_at, seq, uid.clone(), seq))),
            Location::Unschedulable => {
                self.unschedulable += 1;
                q.since = now;
            }
            Location::InFlight => {}
        }
    }

    /// Adds a pending pod, or updates one already queued. An update that changes what the
    /// scheduler looks at sends an unschedulable pod back to be tried.
    pub fn add_or_update(&mut self, pod: Arc<SchedPod>, info: Arc<PodInfo>, now: Instant) {
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(q) => {
                let relevant = *q.info != *info;
                q.pod = pod;
                q.info = info;
                if relevant && q.location == Location::Unschedulable {
                    let location = if q.ready_at > now {
                        Location::Backoff
                    } else {
                        Location::Active
                    };
                    self.set_location(&uid, location, now);
                }
            }
            None => {
                self.pods.insert(
                    uid.clone(),
                    QueuedPod {
                        pod,
                        info,
                        attempts: 0,
                        queued_at: now,
                        location: Location::Active,
                        ready_at: now,
                        since: now,
                        generation: 0,
                    },
                );
                self.set_location(&uid, Location::Active, now);
            }
        }
    }

    /// Removes a pod (deleted, bound elsewhere, finished).
    pub fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        let q = self.pods.remove(uid)?;
        if q.location == Location::Unschedulable {
            self.unschedulable -= 1;
        }
        Some(q)
    }

    /// Whether the pod is queued (in any state).
    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Keeps only the pods in `present` (after a re-list).
    pub fn retain(&mut self, present: &std::collections::HashSet<Arc<str>>) {
        let gone: Vec<Arc<str>> = self
            .pods
            .keys()
            .filter(|uid| !present.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    /// Moves back-off pods whose time has come to the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((ready_at, _, uid, generation))) = self.backoff.peek().cloned() {
            if ready_at > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&uid)
                .is_some_and(|q| q.generation == generation && q.location == Location::Backoff)
            {
                self.set_location(&uid, Location::Active, now);
            }
        }
    }

    /// Sends pods that have waited longer than `max_unschedulable` back to be tried.
    pub fn flush_unschedulable_leftovers(&mut self, now: Instant) {
        let old: Vec<Arc<str>> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                q.location == Location::Unschedulable
                    && now.duration_since(q.since) >= self.config.max_unschedulable
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in old {
            self.activate(&uid, now);
        }
    }

    fn activate(&mut self, uid: &Arc<str>, now: Instant) {
        let Some(q) = self.pods.get(uid) else { return };
        let location = if q.ready_at > now {
            Location::Backoff
        } else {
            Location::Active
        };
        self.set_location(uid, location, now);
    }

    /// A cluster change may let unschedulable pods fit: all go back (through back-off).
    pub fn move_all_to_active(&mut self, now: Instant) {
        if self.unschedulable == 0 {
            return;
        }
        let waiting: Vec<Arc<str>> = self
            .pods
            .iter()
            .filter(|(_, q)| q.location == Location::Unschedulable)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in waiting {
            self.activate(&uid, now);
        }
    }

    /// The next pod to try, marked in flight.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some(entry) = self.active.pop() {
            let Some(q) = self.pods.get_mut(&entry.uid) else {
                continue;
            };
            if q.generation != entry.generation || q.location != Location::Active {
                continue;
            }
            q.location = Location::InFlight;
            return Some(q.clone());
        }
        None
    }

    /// Whether a pod is ready to be tried.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// When the earliest back-off ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((at, ..))| *at)
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        self.config
            .initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.config.max_backoff)
    }

    /// The attempt found no node: the pod waits for a cluster change (and its back-off).
    pub fn unschedulable(&mut self, uid: &Arc<str>, now: Instant) {
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        q.attempts += 1;
        let attempts = q.attempts;
        let ready_at = now + self.backoff_for(attempts);
        if let Some(q) = self.pods.get_mut(uid) {
            q.ready_at = ready_at;
        }
        self.set_location(uid, Location::Unschedulable, now);
    }

    /// The attempt failed for another reason (binding error): retry after back-off. The pod
    /// is added again if it had left the queue.
    pub fn retry(
        &mut self,
        pod: Arc<SchedPod>,
        info: Arc<PodInfo>,
        queued_at: Instant,
        now: Instant,
    ) {
        let uid = info.uid.clone();
        let attempts = self.pods.get(&uid).map_or(0, |q| q.attempts) + 1;
        let ready_at = now + self.backoff_for(attempts);
        self.pods.insert(
            uid.clone(),
            QueuedPod {
                pod,
                info,
                attempts,
                queued_at,
                location: Location::InFlight,
                ready_at,
                since: now,
                generation: 0,
            },
        );
        self.set_location(&uid, Location::Backoff, now);
    }

    /// The pod was assumed onto a node: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32) -> (Arc<SchedPod>, Arc<PodInfo>) {
        let p: SchedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "d", "uid": uid},
            "spec": {"containers": [{"name": "c"}], "priority": priority}
        }))
        .unwrap();
        let info = Arc::new(PodInfo::new(&p));
        (Arc::new(p), info)
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = Queue::new(QueueConfig::default());
        let now = Instant::now();
        for (uid, prio) in [("a", 0), ("b", 5), ("c", 0)] {
            let (p, i) = pod(uid, prio);
            q.add_or_update(p, i, now);
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.uid.to_string())
            .collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_and_their_backoff() {
        let mut q = Queue::new(QueueConfig::default());
        let now = Instant::now();
        let (p, i) = pod("a", 0);
        let uid = i.uid.clone();
        q.add_or_update(p, i, now);
        q.pop().unwrap();
        q.unschedulable(&uid, now);
        assert_eq!(q.unschedulable_count(), 1);
        assert!(q.pop().is_none());
        // A cluster change within the back-off: the pod waits out its back-off first.
        q.move_all_to_active(now);
        assert!(q.pop().is_none());
        assert_eq!(q.next_backoff(), Some(now + Duration::from_secs(1)));
        q.flush_backoff(now + Duration::from_secs(1));
        assert_eq!(q.pop().unwrap().info.uid, uid);
        // The second failure doubles the back-off.
        q.unschedulable(&uid, now);
        q.move_all_to_active(now + Duration::from_secs(3));
        assert!(q.pop().is_some());
    }

    #[test]
    fn leftovers_are_flushed_after_the_maximum_wait() {
        let mut q = Queue::new(QueueConfig {
            max_unschedulable: Duration::from_secs(60),
            ..QueueConfig::default()
        });
        let now = Instant::now();
        let (p, i) = pod("a", 0);
        let uid = i.uid.clone();
        q.add_or_update(p, i, now);
        q.pop().unwrap();
        q.unschedulable(&uid, now);
        q.flush_unschedulable_leftovers(now + Duration::from_secs(30));
        assert_eq!(q.unschedulable_count(), 1);
        q.flush_unschedulable_leftovers(now + Duration::from_secs(61));
        assert_eq!(q.unschedulable_count(), 0);
        assert!(q.pop().is_some());
    }

    #[test]
    fn relevant_updates_requeue_unschedulable_pods() {
        let mut q = Queue::new(QueueConfig::default());
        let now = Instant::now();
        let (p, i) = pod("a", 0);
        let uid = i.uid.clone();
        q.add_or_update(p.clone(), i.clone(), now);
        q.pop().unwrap();
        q.unschedulable(&uid, now);
        // The same requirements (e.g. our own status write): stays put.
        q.add_or_update(p, i, now + Duration::from_secs(2));
        assert_eq!(q.unschedulable_count(), 1);
        let (p2, i2) = pod("a", 7);
        q.add_or_update(p2, i2, now + Duration::from_secs(2));
        assert_eq!(q.unschedulable_count(), 0);
        assert!(q.pop().is_some());
    }
}

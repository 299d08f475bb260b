//! The cluster's NetworkPolicies compiled per node: one watch of NetworkPolicies, one of Pods
//! and one of Namespaces for the whole server, compiled into each node's
//! [`PodPolicy`] list (selectors resolved to pod addresses, named ports to numbers), and per
//! agent that asks for it that list at once and again whenever it changes.
//!
//! Compiling on the server keeps the agents' side small (no API objects, no selectors, no
//! other node's pods) and costs one watch per kind however many nodes there are. A session
//! sends only when its own node's list changed, so a pod starting on one node does not make
//! every other node rewrite its rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::watcher;
use kube::Api;
use skiff_link::proto::policy::{PodPolicy, PolicyPeer, PolicyPort, PolicyProtocol, PolicyRule};
use skiff_link::quic::NodeSender;
use tokio::sync::watch;

/// Every node's compiled policies, by node name (nodes without isolated pods are absent).
pub(crate) type PolicyDirectory = Arc<BTreeMap<String, Arc<Vec<PodPolicy>>>>;

/// How long a session waits after a change before sending, so a burst (a Deployment's pods
/// getting addresses one after another) goes out as one update.
const COALESCE: Duration = Duration::from_millis(50);

/// `(namespace, name)`.
type Key = (String, String);

/// What the compiler reads of a pod.
#[derive(Debug, Clone, PartialEq)]
struct PodFacts {
    namespace: String,
    name: String,
    labels: BTreeMap<String, String>,
    node: Option<String>,
    ip: Option<Ipv4Addr>,
    host_network: bool,
    finished: bool,
    /// Named container ports: `(name, protocol, number)`.
    ports: Vec<(String, PolicyProtocol, u16)>,
}

impl PodFacts {
    fn of(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let ip = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .map(|p| p.ip.as_str())
            .chain(status.and_then(|s| s.pod_ip.as_deref()))
            .find_map(|ip| ip.parse::<Ipv4Addr>().ok());
        let ports = spec
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                let number = u16::try_from(p.container_port).ok().filter(|n| *n > 0)?;
                Some((name, protocol(p.protocol.as_deref())?, number))
            })
            .collect();
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            ip,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            finished: matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
            ports,
        })
    }

    /// Its address when policies may name it as a peer: running (or about to), on the pod
    /// network (a host-network pod's address is its node's, which only an `ipBlock` may
    /// grant), with an address.
    fn peer_ip(&self) -> Option<Ipv4Addr> {
        (!self.host_network && !self.finished)
            .then_some(self.ip)
            .flatten()
    }

    /// Named port `name` of `protocol`, when one of its containers declares it.
    fn named_port(&self, name: &str, protocol: PolicyProtocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|(n, p, _)| n == name && *p == protocol)
            .map(|(_, _, number)| *number)
    }
}

/// A protocol name as the API spells it (`None`: TCP, upstream's default); unknown ones are
/// `None` in the outer option (validation refuses them, so a stored one is from elsewhere).
fn protocol(name: Option<&str>) -> Option<PolicyProtocol> {
    match name {
        None | Some("TCP") => Some(PolicyProtocol::Tcp),
        Some("UDP") => Some(PolicyProtocol::Udp),
        Some("SCTP") => Some(PolicyProtocol::Sctp),
        Some(_) => None,
    }
}

/// Upstream `LabelSelectorAsSelector` then `Matches`: an empty selector matches everything, an
/// unknown operator nothing.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.match_labels.iter().flatten();
    if match_labels
        .into_iter()
        .any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// What the three watches have seen.
#[derive(Debug, Default, Clone)]
pub(crate) struct World {
    policies: BTreeMap<Key, NetworkPolicySpec>,
    pods: BTreeMap<Key, PodFacts>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl World {
    // Each returns whether what the compiler reads changed: most pod updates (conditions,
    // container states) change nothing here and cost no compile.

    fn apply_policy(&mut self, policy: &NetworkPolicy) -> bool {
        let Some(key) = key_of(&policy.metadata) else {
            return false;
        };
        let spec = policy.spec.clone().unwrap_or_default();
        self.policies.insert(key, spec.clone()).as_ref() != Some(&spec)
    }

    fn delete_policy(&mut self, policy: &NetworkPolicy) -> bool {
        key_of(&policy.metadata).is_some_and(|key| self.policies.remove(&key).is_some())
    }

    fn apply_pod(&mut self, pod: &Pod) -> bool {
        let Some(facts) = PodFacts::of(pod) else {
            return false;
        };
        let key = (facts.namespace.clone(), facts.name.clone());
        self.pods.insert(key, facts.clone()).as_ref() != Some(&facts)
    }

    fn delete_pod(&mut self, pod: &Pod) -> bool {
        key_of(&pod.metadata).is_some_and(|key| self.pods.remove(&key).is_some())
    }

    fn apply_namespace(&mut self, namespace: &Namespace) -> bool {
        let Some(name) = namespace.metadata.name.clone() else {
            return false;
        };
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        self.namespaces.insert(name, labels.clone()).as_ref() != Some(&labels)
    }

    fn delete_namespace(&mut self, namespace: &Namespace) -> bool {
        namespace
            .metadata
            .name
            .as_ref()
            .is_some_and(|name| self.namespaces.remove(name).is_some())
    }

    /// Pods (with a peer address) that `peer` of a policy in `namespace` selects.
    fn peer_pods<'a>(
        &'a self,
        namespace: &'a str,
        peer: &'a NetworkPolicyPeer,
    ) -> impl Iterator<Item = &'a PodFacts> + 'a {
        self.pods.values().filter(move |pod| {
            if pod.peer_ip().is_none() {
                return false;
            }
            let in_namespace = match &peer.namespace_selector {
                Some(selector) => self
                    .namespaces
                    .get(&pod.namespace)
                    .is_some_and(|labels| selects(selector, labels)),
                None => pod.namespace == namespace,
            };
            in_namespace
                && peer
                    .pod_selector
                    .as_ref()
                    .is_none_or(|selector| selects(selector, &pod.labels))
        })
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// The addresses one `from`/`to` list admits: `None` for an empty list (any address).
fn resolve_peers(
    world: &World,
    namespace: &str,
    peers: Option<&Vec<NetworkPolicyPeer>>,
) -> Option<Vec<PolicyPeer>> {
    let peers = peers.filter(|p| !p.is_empty())?;
    let mut out: BTreeSet<(Ipv4Net, Vec<Ipv4Net>)> = BTreeSet::new();
    for peer in peers {
        match &peer.ip_block {
            Some(block) => {
                // IPv6 blocks never match the IPv4 pod network.
                let Ok(cidr) = block.cidr.parse::<Ipv4Net>() else {
                    continue;
                };
                let mut except: Vec<Ipv4Net> = block
                    .except
                    .iter()
                    .flatten()
                    .filter_map(|e| e.parse::<Ipv4Net>().ok())
                    .map(|e| e.trunc())
                    .collect();
                except.sort();
                except.dedup();
                out.insert((cidr.trunc(), except));
            }
            None => {
                for pod in world.peer_pods(namespace, peer) {
                    if let Some(ip) = pod.peer_ip() {
                        out.insert((host(ip), Vec::new()));
                    }
                }
            }
        }
    }
    Some(
        out.into_iter()
            .map(|(cidr, except)| PolicyPeer { cidr, except })
            .collect(),
    )
}

fn host(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(ip, 32).unwrap_or_else(|_| Ipv4Net::default())
}

/// A numbered port (or all ports of a protocol); `None` for a named one or an unknown
/// protocol.
fn numbered_port(port: &NetworkPolicyPort) -> Option<PolicyPort> {
    let protocol = protocol(port.protocol.as_deref())?;
    match &port.port {
        None => Some(PolicyPort {
            protocol,
            port: None,
            end_port: None,
        }),
        Some(IntOrString::Int(n)) => Some(PolicyPort {
            protocol,
            port: Some(u16::try_from(*n).ok()?),
            end_port: port.end_port.and_then(|e| u16::try_from(e).ok()),
        }),
        Some(IntOrString::String(_)) => None,
    }
}

/// The named ports of a rule: `(name, protocol)`.
fn named_ports(ports: &[NetworkPolicyPort]) -> Vec<(&str, PolicyProtocol)> {
    ports
        .iter()
        .filter_map(|p| match &p.port {
            Some(IntOrString::String(name)) => {
                Some((name.as_str(), protocol(p.protocol.as_deref())?))
            }
            _ => None,
        })
        .collect()
}

/// One ingress rule with its peers resolved; its named ports still to resolve per target.
#[derive(Debug)]
struct IngressRule<'a> {
    peers: Option<Vec<PolicyPeer>>,
    numbered: Vec<PolicyPort>,
    named: Vec<(&'a str, PolicyProtocol)>,
    /// Whether the rule lists ports at all (an empty list means every port).
    lists_ports: bool,
}

/// The ingress rules of one policy, peers resolved once for every pod it selects.
fn ingress_parts<'a>(
    world: &World,
    namespace: &str,
    spec: &'a NetworkPolicySpec,
) -> Vec<IngressRule<'a>> {
    spec.ingress
        .iter()
        .flatten()
        .map(|rule| {
            let listed = rule.ports.as_deref().unwrap_or_default();
            IngressRule {
                peers: resolve_peers(world, namespace, rule.from.as_ref()),
                numbered: listed.iter().filter_map(numbered_port).collect(),
                named: named_ports(listed),
                lists_ports: !listed.is_empty(),
            }
        })
        .collect()
}

/// The ingress rules for `target`: named ports resolve against the target's own container
/// ports. A rule whose ports all resolve to nothing matches nothing and is left out (an empty
/// port list would mean every port).
fn ingress_rules(parts: &[IngressRule<'_>], target: &PodFacts) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    for part in parts {
        let mut ports = part.numbered.clone();
        for &(name, protocol) in &part.named {
            if let Some(number) = target.named_port(name, protocol) {
                ports.push(PolicyPort {
                    protocol,
                    port: Some(number),
                    end_port: None,
                });
            }
        }
        if part.lists_ports && ports.is_empty() {
            continue;
        }
        rules.push(PolicyRule {
            peers: part.peers.clone(),
            ports,
        });
    }
    rules
}

/// Egress rules of one policy (the same for every pod it selects): named ports resolve against
/// each destination pod's container ports, one rule per resolved number with the pods that
/// have it.
fn egress_rules(world: &World, namespace: &str, spec: &NetworkPolicySpec) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    for rule in spec.egress.iter().flatten() {
        let listed = rule.ports.as_deref().unwrap_or_default();
        let peers = resolve_peers(world, namespace, rule.to.as_ref());
        let numbered: Vec<PolicyPort> = listed.iter().filter_map(numbered_port).collect();
        if listed.is_empty() || !numbered.is_empty() {
            rules.push(PolicyRule {
                peers: peers.clone(),
                ports: numbered,
            });
        }
        let named = named_ports(listed);
        if named.is_empty() {
            continue;
        }
        // Destination pods: those the peers cover (any pod for an empty `to`).
        let admitted = |ip: Ipv4Addr| match &peers {
            None => true,
            Some(peers) => peers
                .iter()
                .any(|p| p.cidr.contains(&ip) && !p.except.iter().any(|e| e.contains(&ip))),
        };
        let mut by_port: BTreeMap<(PolicyProtocol, u16), BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for pod in world.pods.values() {
            let Some(ip) = pod.peer_ip().filter(|ip| admitted(*ip)) else {
                continue;
            };
            for &(name, protocol) in &named {
                if let Some(number) = pod.named_port(name, protocol) {
                    by_port.entry((protocol, number)).or_default().insert(ip);
                }
            }
        }
        for ((protocol, number), ips) in by_port {
            rules.push(PolicyRule {
                peers: Some(
                    ips.into_iter()
                        .map(|ip| PolicyPeer {
                            cidr: host(ip),
                            except: Vec::new(),
                        })
                        .collect(),
                ),
                ports: vec![PolicyPort {
                    protocol,
                    port: Some(number),
                    end_port: None,
                }],
            });
        }
    }
    rules
}

/// The policy types a spec affects (its `policyTypes`, or upstream's inference when unset).
fn policy_types(spec: &NetworkPolicySpec) -> (bool, bool) {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// Compiles every node's policies: for each pod some policy selects, the union of the rules of
/// every policy that selects it, per direction. Pure: the same world gives the same lists.
pub(crate) fn compile(world: &World) -> BTreeMap<String, Vec<PodPolicy>> {
    let mut per_pod: BTreeMap<Key, PodPolicy> = BTreeMap::new();
    for ((namespace, _), spec) in &world.policies {
        let (ingress, egress) = policy_types(spec);
        if !ingress && !egress {
            continue;
        }
        let mut ingress_compiled: Option<Vec<IngressRule<'_>>> = None;
        let mut egress_compiled: Option<Vec<PolicyRule>> = None;
        let targets = world.pods.values().filter(|pod| {
            &pod.namespace == namespace
                && pod.node.is_some()
                && !pod.host_network
                && !pod.finished
                && pod.ip.is_some()
                && spec
                    .pod_selector
                    .as_ref()
                    .is_none_or(|selector| selects(selector, &pod.labels))
        });
        for pod in targets {
            let Some(ip) = pod.ip else { continue };
            let entry = per_pod
                .entry((pod.namespace.clone(), pod.name.clone()))
                .or_insert_with(|| PodPolicy {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    ip,
                    ingress: None,
                    egress: None,
                });
            if ingress {
                let parts =
                    ingress_compiled.get_or_insert_with(|| ingress_parts(world, namespace, spec));
                let rules = ingress_rules(parts, pod);
                entry.ingress.get_or_insert_with(Vec::new).extend(rules);
            }
            if egress {
                let rules = egress_compiled
                    .get_or_insert_with(|| egress_rules(world, namespace, spec))
                    .clone();
                entry.egress.get_or_insert_with(Vec::new).extend(rules);
            }
        }
    }
    let mut nodes: BTreeMap<String, Vec<PodPolicy>> = BTreeMap::new();
    for (key, policy) in per_pod {
        if let Some(node) = world.pods.get(&key).and_then(|p| p.node.clone()) {
            nodes.entry(node).or_default().push(policy);
        }
    }
    nodes
}

enum Change {
    Policy(Box<watcher::Event<NetworkPolicy>>),
    Pod(Box<watcher::Event<Pod>>),
    Namespace(Box<watcher::Event<Namespace>>),
}

/// Lists in progress (a watch's `Init` .. `InitDone`), replacing the kind at `InitDone`.
#[derive(Default)]
struct Listing {
    policies: Option<World>,
    pods: Option<World>,
    namespaces: Option<World>,
}

/// What one watch event did.
#[derive(Debug, PartialEq, Eq)]
enum Folded {
    /// Nothing the compiler reads changed (or a list is still in progress).
    Nothing,
    /// The world changed.
    Changed,
    /// A kind finished (re)listing and replaced what was known of it.
    Listed(&'static str),
}

/// Folds one watch event in.
fn fold(world: &mut World, listing: &mut Listing, change: Change) -> Folded {
    use watcher::Event;
    let changed = match change {
        Change::Policy(event) => match *event {
            Event::Init => {
                listing.policies = Some(World::default());
                false
            }
            Event::InitApply(p) => {
                let list = listing.policies.get_or_insert_with(World::default);
                let _ = list.apply_policy(&p);
                false
            }
            Event::InitDone => {
                world.policies = listing.policies.take().unwrap_or_default().policies;
                return Folded::Listed("networkpolicies");
            }
            Event::Apply(p) => world.apply_policy(&p),
            Event::Delete(p) => world.delete_policy(&p),
        },
        Change::Pod(event) => match *event {
            Event::Init => {
                listing.pods = Some(World::default());
                false
            }
            Event::InitApply(p) => {
                let _ = listing
                    .pods
                    .get_or_insert_with(World::default)
                    .apply_pod(&p);
                false
            }
            Event::InitDone => {
                world.pods = listing.pods.take().unwrap_or_default().pods;
                return Folded::Listed("pods");
            }
            Event::Apply(p) => world.apply_pod(&p),
            Event::Delete(p) => world.delete_pod(&p),
        },
        Change::Namespace(event) => match *event {
            Event::Init => {
                listing.namespaces = Some(World::default());
                false
            }
            Event::InitApply(n) => {
                let list = listing.namespaces.get_or_insert_with(World::default);
                let _ = list.apply_namespace(&n);
                false
            }
            Event::InitDone => {
                world.namespaces = listing.namespaces.take().unwrap_or_default().namespaces;
                return Folded::Listed("namespaces");
            }
            Event::Apply(n) => world.apply_namespace(&n),
            Event::Delete(n) => world.delete_namespace(&n),
        },
    };
    if changed {
        Folded::Changed
    } else {
        Folded::Nothing
    }
}

/// Starts the server-wide watches; the receiver always holds the latest compiled directory.
/// Its first value is published only once all three kinds were listed, so no node is sent a
/// partial view (a policy without its peer pods would deny what it allows).
pub(crate) fn start(admin: kube::Client) -> watch::Receiver<Option<PolicyDirectory>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let policies = watcher(
            Api::<NetworkPolicy>::all(admin.clone()),
            watcher::Config::default(),
        )
        .map(|e| e.map(|e| Change::Policy(Box::new(e))));
        let pods = watcher(Api::<Pod>::all(admin.clone()), watcher::Config::default())
            .map(|e| e.map(|e| Change::Pod(Box::new(e))));
        let namespaces = watcher(Api::<Namespace>::all(admin), watcher::Config::default())
            .map(|e| e.map(|e| Change::Namespace(Box::new(e))));
        let mut stream =
            futures::stream::select(policies, futures::stream::select(pods, namespaces)).boxed();
        let mut world = World::default();
        let mut listing = Listing::default();
        let mut listed: BTreeSet<&'static str> = BTreeSet::new();
        let mut published: BTreeMap<String, Arc<Vec<PodPolicy>>> = BTreeMap::new();
        let mut dirty = false;
        while let Some(first) = stream.next().await {
            // Take everything already waiting, then compile once.
            let mut batch = vec![first];
            while let Some(Some(next)) = stream.next().now_or_never() {
                batch.push(next);
            }
            for event in batch {
                match event {
                    Ok(change) => match fold(&mut world, &mut listing, change) {
                        Folded::Nothing => {}
                        Folded::Changed => dirty = true,
                        Folded::Listed(kind) => {
                            listed.insert(kind);
                            dirty = true;
                        }
                    },
                    Err(error) => {
                        tracing::debug!(%error, "policy watch interrupted; it resumes");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            if listed.len() < 3 || !(dirty || tx.borrow().is_none()) {
                continue;
            }
            dirty = false;
            // Keep the previous Arc of every unchanged node, so sessions see at a glance
            // that their node's list did not change.
            let compiled = compile(&world);
            let mut next: BTreeMap<String, Arc<Vec<PodPolicy>>> = BTreeMap::new();
            for (node, list) in compiled {
                let kept = published.get(&node).filter(|old| ***old == list).cloned();
                next.insert(node, kept.unwrap_or_else(|| Arc::new(list)));
            }
            let changed = next.len() != published.len()
                || next.iter().any(|(node, list)| {
                    published
                        .get(node)
                        .is_none_or(|old| !Arc::ptr_eq(old, list))
                });
            if changed || tx.borrow().is_none() {
                published = next;
                if tx.send(Some(Arc::new(published.clone()))).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Sends `node`'s policies to its agent: once complete, then whenever its own list changes,
/// until its session ends.
pub(crate) async fn serve(
    mut directory: watch::Receiver<Option<PolicyDirectory>>,
    node: String,
    sender: NodeSender,
) {
    let mut sent: Option<Arc<Vec<PodPolicy>>> = None;
    let empty: Arc<Vec<PodPolicy>> = Arc::new(Vec::new());
    loop {
        let now = directory.borrow_and_update().clone();
        if let Some(now) = now {
            let mine = now.get(&node).cloned().unwrap_or_else(|| empty.clone());
            let unchanged = sent
                .as_ref()
                .is_some_and(|old| Arc::ptr_eq(old, &mine) || **old == *mine);
            if !unchanged {
                if sender.send_policies((*mine).clone()).is_err() {
                    return;
                }
                sent = Some(mine);
            }
        }
        tokio::select! {
            changed = directory.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(COALESCE).await;
            }
            _ = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;

//! LoadBalancer Services on bare metal, like k3s's ServiceLB but with no
//! DaemonSet: a Service of type LoadBalancer gets the addresses of the
//! nodes that can take its ports in `status.loadBalancer.ingress`, and
//! kube-proxy (which programs ingress addresses) carries `<node IP>:<port>`
//! to the pods.
//!
//! Lifecycle: one leader among the servers (Lease `k8s-servicelb`) runs a
//! kube-runtime Controller over Services, every Service looked at again on
//! any change of the Nodes. For each Service of type LoadBalancer that names
//! no `loadBalancerClass` (another implementation's), [`assign`] picks:
//!
//! - the Ready nodes, only those labelled [`ENABLE_LABEL`]`=true` when any
//!   node is, never those labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers`;
//! - minus each node that listens on one of the Service's ports (what it
//!   publishes in [`host_ports::ANNOTATION`]; k8s's own ports when it
//!   published nothing yet): kube-proxy would take the port over there;
//!
//! writes their addresses (ExternalIP, else InternalIP) into the status,
//! and records an Event on the Service when the choice changes: `Assigned`,
//! `PortInUse` per node left out (with the port), `NoNodeAvailable` when
//! none is left (the Service stays pending). A Service that stops being a
//! LoadBalancer has its ingress cleared.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use super::Nodes;
use crate::kubeclient::{self, leader};
use crate::node::host_ports;

const LEASE: &str = "k8s-servicelb";
/// When any node has it (`=true`), only such nodes take LoadBalancer Services.
pub const ENABLE_LABEL: &str = "servicelb.k8s.local/enabled";
/// Kubernetes' own label for nodes no load balancer may use.
const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The ports k8s listens on (2379/2380 on HA servers), held for a node
/// that has not published its own list yet.
const K8S_PORTS: [(&str, u16); 9] =
    [("TCP", 22), ("TCP", 2379), ("TCP", 2380), ("TCP", 6443), ("TCP", 6444), ("TCP", 9345), ("TCP", 10250), ("TCP", 10256), ("UDP", 8472)];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    client: Client,
    recorder: Recorder,
    /// Every Node (a Service looked at before they are listed would lose
    /// its addresses).
    nodes: Nodes,
    /// The decision last told in Events, per Service UID: Events only on
    /// news (a deleted Service's entry stays until leadership moves: bytes).
    told: Mutex<HashMap<String, Assignment>>,
}

/// Campaigns for the Lease and, while leading, reconciles every Service;
/// never returns.
pub async fn run(client: Client, identity: String) {
    leader::run_controller(client, LEASE, &identity, |client, recorder| async move {
        let ctx = Arc::new(Context { client: client.clone(), recorder, nodes: Nodes::default(), told: Mutex::default() });
        let node_changes = ctx.nodes.follow(client.clone());
        Controller::new(Api::<Service>::all(client), watcher::Config::default())
            .reconcile_all_on(node_changes)
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await
    })
    .await
}

/// What [`assign`] decided for a Service.
#[derive(Debug, PartialEq)]
pub struct Assignment {
    /// The addresses for `status.loadBalancer.ingress`, sorted.
    pub ingress: Vec<String>,
    /// Nodes left out because they listen on a port: (node, "TCP/22").
    pub port_in_use: Vec<(String, String)>,
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = svc.spec.clone().unwrap_or_default();
    let current: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default();
    let ours = spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.is_none();
    if !ours {
        // Clear only what this controller wrote: a Service that was ours.
        if spec.type_.as_deref() != Some("LoadBalancer") && !current.is_empty() {
            write_ingress(&ctx.client, &svc, &[]).await?;
        }
        return Ok(Action::await_change());
    }
    let Some(nodes) = ctx.nodes.get() else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let a = assign(&svc, &nodes);
    if a.ingress != current {
        write_ingress(&ctx.client, &svc, &a.ingress).await?;
        tracing::info!(service = %format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any()), ingress = %a.ingress.join(","), "LoadBalancer addresses");
    }
    let uid = svc.uid().unwrap_or_default();
    if ctx.told.lock().unwrap().get(&uid) != Some(&a) {
        for ev in events(&a) {
            if let Err(e) = ctx.recorder.publish(&ev, &svc.object_ref(&())).await {
                tracing::debug!("servicelb event: {e}");
            }
        }
        ctx.told.lock().unwrap().insert(uid, a);
    }
    Ok(Action::await_change())
}

fn error_policy(svc: Arc<Service>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(service = %svc.name_any(), "servicelb: {error}");
    Action::requeue(Duration::from_secs(5))
}

async fn write_ingress(client: &Client, svc: &Service, ips: &[String]) -> Result<(), kube::Error> {
    let ingress: Vec<LoadBalancerIngress> =
        ips.iter().map(|ip| LoadBalancerIngress { ip: Some(ip.clone()), ip_mode: Some("VIP".into()), ..Default::default() }).collect();
    let api: Api<Service> = Api::namespaced(client.clone(), &svc.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
    api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn events(a: &Assignment) -> Vec<Event> {
    let mut out: Vec<Event> = a
        .port_in_use
        .iter()
        .map(|(node, port)| Event {
            type_: EventType::Warning,
            reason: "PortInUse".into(),
            note: Some(format!("node {node} listens on {port}: it is left out (its traffic would go to the Service instead); use another port")),
            action: "AssignAddresses".into(),
            secondary: None,
        })
        .collect();
    out.push(if a.ingress.is_empty() {
        Event {
            type_: EventType::Warning,
            reason: "NoNodeAvailable".into(),
            note: Some("no Ready node can take this Service's ports; it stays pending".into()),
            action: "AssignAddresses".into(),
            secondary: None,
        }
    } else {
        Event {
            type_: EventType::Normal,
            reason: "Assigned".into(),
            note: Some(format!("LoadBalancer addresses: {}", a.ingress.join(", "))),
            action: "AssignAddresses".into(),
            secondary: None,
        }
    });
    out
}

/// The nodes' addresses a LoadBalancer Service gets, and the nodes left out
/// for a port they listen on (pure; see the module doc).
pub fn assign(svc: &Service, nodes: &[Arc<Node>]) -> Assignment {
    let wanted: BTreeSet<(String, u16)> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port as u16))
        .collect();
    let labelled = |n: &Node, key: &str| n.labels().get(key).is_some_and(|v| v == "true");
    let opted_in = nodes.iter().any(|n| labelled(n, ENABLE_LABEL));
    let mut a = Assignment { ingress: vec![], port_in_use: vec![] };
    for node in nodes {
        if !kubeclient::node_ready(node) || (opted_in && !labelled(node, ENABLE_LABEL)) || node.labels().contains_key(EXCLUDE_LABEL) {
            continue;
        }
        let held = host_ports::parse(node.annotations().get(host_ports::ANNOTATION).map(String::as_str))
            .unwrap_or_else(|| K8S_PORTS.iter().map(|(proto, port)| (proto.to_string(), *port)).collect());
        if let Some((proto, port)) = wanted.iter().find(|p| held.contains(*p)) {
            a.port_in_use.push((node.name_any(), format!("{proto}/{port}")));
            continue;
        }
        if let Some(ip) = address(node) {
            a.ingress.push(ip);
        }
    }
    a.ingress.sort();
    a.ingress.dedup();
    a
}

/// A node's ExternalIP, else its InternalIP.
fn address(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    let of = |kind: &str| addresses.iter().find(|a| a.type_ == kind).map(|a| a.address.clone());
    of("ExternalIP").or_else(|| of("InternalIP"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, ready: bool, labels: serde_json::Value, ports: Option<&str>) -> Arc<Node> {
        let mut annotations = json!({});
        if let Some(p) = ports {
            annotations[host_ports::ANNOTATION] = json!(p);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": ip}],
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                },
            }))
            .unwrap(),
        )
    }

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "LoadBalancer", "ports": ports}})).unwrap()
    }

    #[test]
    fn every_ready_node_that_can_take_the_ports() {
        let nodes = [
            node("s1", "10.0.0.11", true, json!({}), Some("tcp/22,tcp/6443,tcp/9345")),
            node("a1", "10.0.0.21", true, json!({}), Some("tcp/22")),
            node("a2", "10.0.0.22", false, json!({}), Some("")),
        ];
        let a = assign(&service(json!([{"port": 80}])), &nodes);
        assert_eq!(a, Assignment { ingress: vec!["10.0.0.11".into(), "10.0.0.21".into()], port_in_use: vec![] }, "a NotReady node is left out");
        let a = assign(&service(json!([{"port": 8080}, {"port": 6443}])), &nodes);
        assert_eq!(a.ingress, ["10.0.0.21"]);
        assert_eq!(a.port_in_use, [("s1".to_string(), "TCP/6443".to_string())]);
        let a = assign(&service(json!([{"port": 22}])), &nodes);
        assert!(a.ingress.is_empty() && a.port_in_use.len() == 2, "{a:?}");
        let udp = assign(&service(json!([{"port": 22, "protocol": "UDP"}])), &nodes);
        assert_eq!(udp.ingress.len(), 2, "UDP/22 is free where only TCP/22 listens");
    }

    #[test]
    fn labels_choose_and_exclude_nodes() {
        let nodes = [
            node("s1", "10.0.0.11", true, json!({ENABLE_LABEL: "true"}), Some("")),
            node("a1", "10.0.0.21", true, json!({}), Some("")),
            node("a2", "10.0.0.22", true, json!({ENABLE_LABEL: "true", EXCLUDE_LABEL: ""}), Some("")),
        ];
        assert_eq!(assign(&service(json!([{"port": 80}])), &nodes).ingress, ["10.0.0.11"]);
    }

    #[test]
    fn a_node_that_published_nothing_holds_k8s_ports() {
        let nodes = [node("old", "10.0.0.31", true, json!({}), None)];
        assert_eq!(assign(&service(json!([{"port": 10250}])), &nodes).port_in_use.len(), 1);
        assert_eq!(assign(&service(json!([{"port": 80}])), &nodes).ingress, ["10.0.0.31"]);
    }

    #[test]
    fn events_say_what_was_decided() {
        let a = Assignment { ingress: vec![], port_in_use: vec![("s1".into(), "TCP/22".into())] };
        let reasons: Vec<String> = events(&a).into_iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["PortInUse", "NoNodeAvailable"]);
        let a = Assignment { ingress: vec!["10.0.0.11".into()], port_in_use: vec![] };
        assert_eq!(events(&a)[0].note.as_deref(), Some("LoadBalancer addresses: 10.0.0.11"));
    }
}

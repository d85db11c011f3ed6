//! Local persistent volumes: the provisioner of the `local-path`
//! StorageClass (`templates/addons/local-storage.yaml`), with no helper pod
//! and no image (Rancher's local-path-provisioner needs both).
//!
//! Lifecycle of a volume, between this controller (one leader among the
//! servers, Lease `k8s-local-path`) and the node's side
//! ([`crate::node::local_path`]):
//!
//! ```text
//! PVC created (class provisioner k8s.local/local-path, WaitForFirstConsumer)
//!   → the scheduler picks a node for its first pod: annotation volume.kubernetes.io/selected-node
//!   → provision: PV pvc-<uid>, hostPath <node's storage dir>/pvc-<uid>_<ns>_<name>, node affinity to
//!     that node, claimRef to the PVC; Event Provisioned (or ProvisioningFailed: RWX, Block, no node)
//!   → kube-controller-manager binds them; the kubelet creates the directory, the node opens it (0777)
//! PVC deleted → PV Released (reclaim Delete)
//!   → the node removes the directory and lists the PV in its Node's k8s.local/local-path-removed
//!   → reclaim: the PV is deleted (at once when its Node is gone: nothing left to clean)
//! ```
//!
//! A node that is down keeps its released volumes until it is back, as
//! with any local storage.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use super::Nodes;
use crate::kubeclient::leader;
use crate::node::local_path::{released_for_deletion, volume_node, PROVISIONER, REMOVED_ANNOTATION, STORAGE_DIR_ANNOTATION};

const LEASE: &str = "k8s-local-path";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const STORAGE_PROVISIONER: [&str; 2] = ["volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner"];
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    client: Client,
    recorder: Recorder,
    nodes: Nodes,
}

/// Campaigns for the Lease and, while leading, provisions claims and
/// reclaims released volumes; never returns.
pub async fn run(client: Client, identity: String) {
    leader::run_controller(client, LEASE, &identity, |client, recorder| async move {
        let ctx = Arc::new(Context { client: client.clone(), recorder, nodes: Nodes::default() });
        let node_changes = ctx.nodes.follow(client.clone());
        let claims = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
            .run(provision, error_policy, ctx.clone())
            .for_each(|_| async {});
        let volumes = Controller::new(Api::<PersistentVolume>::all(client), watcher::Config::default())
            .reconcile_all_on(node_changes)
            .run(reclaim, error_policy, ctx)
            .for_each(|_| async {});
        futures::join!(claims, volumes);
    })
    .await
}

fn error_policy<K: ResourceExt>(object: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(object = %object.name_any(), "local-path: {error}");
    Action::requeue(Duration::from_secs(5))
}

/// What to do with a claim (pure).
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// Not ours, or done.
    Ignore,
    /// Ours, waiting for the scheduler to pick a node.
    Wait,
    /// Ours and impossible as asked: the Event's message.
    Refuse(String),
    /// Make this volume.
    Provision(Box<PersistentVolume>),
}

/// Decides a claim: ours when its class's provisioner is, pending with no
/// volume, and a node selected; `storage_dir` is the node's.
pub fn decide(pvc: &PersistentVolumeClaim, class: Option<&StorageClass>, storage_dir: impl Fn(&str) -> String) -> Claim {
    let annotations = pvc.annotations();
    let ours = STORAGE_PROVISIONER.iter().any(|a| annotations.get(*a).map(String::as_str) == Some(PROVISIONER));
    let spec = pvc.spec.clone().unwrap_or_default();
    let pending = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending") == "Pending";
    if !ours || !pending || spec.volume_name.is_some() || pvc.metadata.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if let Some(m) = modes.iter().find(|m| !matches!(m.as_str(), "ReadWriteOnce" | "ReadWriteOncePod")) {
        return Claim::Refuse(format!("access mode {m}: a local-path volume is one directory on one node; ask for ReadWriteOnce"));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Claim::Refuse("volumeMode Block: local-path volumes are directories; ask for Filesystem".into());
    }
    let Some(node) = annotations.get(SELECTED_NODE) else {
        let immediate = class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("Immediate");
        return if immediate {
            Claim::Refuse("the StorageClass binds Immediately: a local volume needs its pod's node first; use volumeBindingMode WaitForFirstConsumer".into())
        } else {
            Claim::Wait
        };
    };
    let (ns, name, uid) = (pvc.namespace().unwrap_or_default(), pvc.name_any(), pvc.uid().unwrap_or_default());
    let pv_name = format!("pvc-{uid}");
    let path = format!("{}/{pv_name}_{ns}_{name}", storage_dir(node).trim_end_matches('/'));
    let capacity = spec.resources.as_ref().and_then(|r| r.requests.clone()).and_then(|r| r.get("storage").cloned());
    let pv = PersistentVolume {
        metadata: ObjectMeta { name: Some(pv_name), annotations: Some([(PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()), ..Default::default() },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(if modes.is_empty() { vec!["ReadWriteOnce".into()] } else { modes }),
            capacity: capacity.map(|c| [("storage".to_string(), c)].into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(name),
                uid: Some(uid),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.clone()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(class.and_then(|c| c.reclaim_policy.clone()).unwrap_or_else(|| "Delete".into())),
            storage_class_name: spec.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Claim::Provision(Box::new(pv))
}

async fn provision(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action, Error> {
    let class_name = pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default();
    let class = if class_name.is_empty() { None } else { Api::<StorageClass>::all(ctx.client.clone()).get_opt(&class_name).await? };
    let nodes = ctx.nodes.get().unwrap_or_default();
    let storage_dir = |node: &str| node_storage_dir(&nodes, node).unwrap_or_default();
    match decide(&pvc, class.as_ref(), storage_dir) {
        Claim::Ignore | Claim::Wait => Ok(Action::await_change()),
        Claim::Refuse(why) => {
            note(&ctx, &pvc, EventType::Warning, "ProvisioningFailed", why).await;
            Ok(Action::await_change())
        }
        Claim::Provision(pv) => {
            let node = volume_node(&pv).unwrap_or_default();
            if node_storage_dir(&nodes, &node).is_none() {
                // The node publishes its directory once Ready; the scheduler picked it just now.
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            let path = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.clone()).unwrap_or_default();
            match Api::<PersistentVolume>::all(ctx.client.clone()).create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    tracing::info!(volume = %pv.name_any(), node, path, "local volume provisioned");
                    note(&ctx, &pvc, EventType::Normal, "Provisioned", format!("volume {} on node {node} at {path}", pv.name_any())).await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            Ok(Action::await_change())
        }
    }
}

/// The directory a node published, if it did.
fn node_storage_dir(nodes: &[Arc<Node>], name: &str) -> Option<String> {
    nodes.iter().find(|n| n.name_any() == name).and_then(|n| n.annotations().get(STORAGE_DIR_ANNOTATION).cloned())
}

async fn reclaim(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !released_for_deletion(&pv) {
        return Ok(Action::await_change());
    }
    let Some(nodes) = ctx.nodes.get() else {
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    let name = pv.name_any();
    let node = volume_node(&pv).unwrap_or_default();
    let cleaned = match nodes.iter().find(|n| n.name_any() == node) {
        None => true, // the node is gone, and its disk with it
        Some(n) => n.annotations().get(REMOVED_ANNOTATION).is_some_and(|list| list.split(',').any(|v| v == name)),
    };
    if cleaned {
        match Api::<PersistentVolume>::all(ctx.client.clone()).delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, node, "released local volume deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}

async fn note(ctx: &Context, pvc: &PersistentVolumeClaim, type_: EventType, reason: &str, note: String) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Provision".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &pvc.object_ref(&())).await {
        tracing::debug!("local-path event: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data-web-0", "namespace": "apps", "uid": "1234",
                "annotations": {"volume.kubernetes.io/storage-provisioner": PROVISIONER, SELECTED_NODE: "a1"}},
            "spec": {"storageClassName": "local-path", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        json_patch(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn json_patch(v: &mut serde_json::Value, extra: serde_json::Value) {
        if let (Some(a), serde_json::Value::Object(b)) = (v.as_object_mut(), extra) {
            for (k, val) in b {
                match (a.get_mut(&k), val) {
                    (Some(old @ serde_json::Value::Object(_)), new @ serde_json::Value::Object(_)) => json_patch(old, new),
                    (_, new) => {
                        a.insert(k, new);
                    }
                }
            }
        }
    }

    fn dir(node: &str) -> String {
        format!("/srv/{node}/storage/")
    }

    #[test]
    fn a_claim_with_a_node_gets_a_volume_there() {
        let Claim::Provision(pv) = decide(&claim(json!({})), None, dir) else { panic!("not provisioned") };
        assert_eq!(pv.name_any(), "pvc-1234");
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.host_path.as_ref().unwrap().path, "/srv/a1/storage/pvc-1234_apps_data-web-0");
        assert_eq!(volume_node(&pv).as_deref(), Some("a1"));
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("1234"));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(pv.annotations()[PROVISIONED_BY], PROVISIONER);
    }

    #[test]
    fn claims_not_ours_or_done_or_impossible() {
        assert_eq!(decide(&claim(json!({"metadata": {"annotations": {"volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"}}})), None, dir), Claim::Ignore);
        assert_eq!(decide(&claim(json!({"status": {"phase": "Bound"}})), None, dir), Claim::Ignore);
        assert_eq!(decide(&claim(json!({"spec": {"volumeName": "pvc-1234"}})), None, dir), Claim::Ignore);
        let no_node: PersistentVolumeClaim = {
            let mut c = claim(json!({}));
            c.metadata.annotations.as_mut().unwrap().remove(SELECTED_NODE);
            c
        };
        assert_eq!(decide(&no_node, None, dir), Claim::Wait);
        let immediate: StorageClass = serde_json::from_value(json!({"metadata": {"name": "x"}, "provisioner": PROVISIONER, "volumeBindingMode": "Immediate"})).unwrap();
        assert!(matches!(decide(&no_node, Some(&immediate), dir), Claim::Refuse(m) if m.contains("WaitForFirstConsumer")));
        assert!(matches!(decide(&claim(json!({"spec": {"accessModes": ["ReadWriteMany"]}})), None, dir), Claim::Refuse(m) if m.contains("ReadWriteMany")));
        assert!(matches!(decide(&claim(json!({"spec": {"volumeMode": "Block"}})), None, dir), Claim::Refuse(m) if m.contains("Block")));
        let retain: StorageClass = serde_json::from_value(json!({"metadata": {"name": "x"}, "provisioner": PROVISIONER, "reclaimPolicy": "Retain"})).unwrap();
        let Claim::Provision(pv) = decide(&claim(json!({})), Some(&retain), dir) else { panic!() };
        assert_eq!(pv.spec.unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    }

    #[test]
    fn released_volumes_of_ours_under_delete() {
        let Claim::Provision(pv) = decide(&claim(json!({})), None, dir) else { panic!() };
        let mut pv = *pv;
        assert!(!released_for_deletion(&pv));
        pv.status = Some(serde_json::from_value(json!({"phase": "Released"})).unwrap());
        assert!(released_for_deletion(&pv));
        pv.metadata.annotations = None;
        assert!(!released_for_deletion(&pv), "another provisioner's volume is not ours to delete");
    }
}

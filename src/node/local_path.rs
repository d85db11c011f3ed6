//! A node's side of local persistent volumes (the server side and the whole
//! lifecycle: [`crate::controllers::local_path`]).
//!
//! Lifecycle: once the node is Ready, [`follow`] publishes the node's
//! storage dir on its Node ([`STORAGE_DIR_ANNOTATION`]), then follows the
//! PersistentVolumes of the `k8s.local/local-path` provisioner on this node:
//! a live one gets its directory (0777, as local-path-provisioner makes it,
//! so pods running as any user can write); a released one under reclaim
//! Delete has its directory removed and its name listed in
//! [`REMOVED_ANNOTATION`], which the controller waits for before deleting
//! the volume. Only directories named `pvc-…` right under the storage dir
//! are ever touched, whatever a volume's path says.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::kubeclient;

/// The StorageClass provisioner of local volumes.
pub const PROVISIONER: &str = "k8s.local/local-path";
/// Where a node keeps its volumes, as it publishes it on its Node.
pub const STORAGE_DIR_ANNOTATION: &str = "k8s.local/storage-dir";
/// The released volumes whose directory a node removed (comma-separated PV names).
pub const REMOVED_ANNOTATION: &str = "k8s.local/local-path-removed";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Follows this node's local volumes until stopped (see the module doc).
pub async fn follow(kubelet: Client, node: String, storage_dir: PathBuf) {
    let nodes: Api<Node> = Api::all(kubelet.clone());
    if let Err(e) = annotate(&nodes, &node, STORAGE_DIR_ANNOTATION, &storage_dir.display().to_string()).await {
        tracing::warn!("publishing the storage dir on node {node}: {e}");
    }
    let mut published: Option<String> = None;
    let mut volumes = std::pin::pin!(kubeclient::follow(Api::<PersistentVolume>::all(kubelet), watcher::Config::default(), None));
    while let Some(all) = volumes.next().await {
        let removed = sync(&all, &node, &storage_dir);
        if published.as_ref() != Some(&removed) {
            match annotate(&nodes, &node, REMOVED_ANNOTATION, &removed).await {
                Ok(()) => published = Some(removed),
                Err(e) => tracing::warn!("reporting removed volumes on node {node}: {e}"),
            }
        }
    }
}

/// Makes or removes the directories of this node's volumes; returns the
/// released ones whose directory is gone, as the annotation lists them.
fn sync(all: &[Arc<PersistentVolume>], node: &str, storage_dir: &Path) -> String {
    let mut removed = BTreeSet::new();
    for pv in all.iter().filter(|pv| is_ours(pv) && volume_node(pv).as_deref() == Some(node)) {
        let name = pv.name_any();
        let Some(dir) = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()).and_then(|h| confined(storage_dir, Path::new(&h.path))) else {
            tracing::warn!(volume = %name, "a local volume's path is not a pvc-… directory right under {}: left alone", storage_dir.display());
            continue;
        };
        if released_for_deletion(pv) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => tracing::info!(volume = %name, dir = %dir.display(), "released local volume removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(volume = %name, "removing {}: {e}", dir.display());
                    continue;
                }
            }
            removed.insert(name);
        } else if let Err(e) = open_dir(&dir) {
            tracing::warn!(volume = %name, "making {}: {e}", dir.display());
        }
    }
    removed.into_iter().collect::<Vec<_>>().join(",")
}

/// The directory with mode 0777 (created if missing; the kubelet may have
/// made it first, 0755).
fn open_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if std::fs::metadata(dir)?.permissions().mode() & 0o7777 != 0o777 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// `path` when it is a `pvc-…` directory right under `storage_dir`, with
/// no `..` or other trick: a volume's path is written by whoever may create
/// PersistentVolumes, and this node deletes what it names.
pub fn confined(storage_dir: &Path, path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    (plain && parent == storage_dir && name.starts_with("pvc-")).then(|| path.to_path_buf())
}

fn is_ours(pv: &PersistentVolume) -> bool {
    pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER)
}

/// The node a volume of ours lives on (its node affinity).
pub fn volume_node(pv: &PersistentVolume) -> Option<String> {
    let terms = &pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    let req = terms.first()?.match_expressions.as_ref()?.iter().find(|r| r.key == HOSTNAME_LABEL && r.operator == "In")?;
    req.values.as_ref()?.first().cloned()
}

/// Whether a volume is ours and released under reclaim Delete.
pub fn released_for_deletion(pv: &PersistentVolume) -> bool {
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    is_ours(pv) && released && delete
}

async fn annotate(nodes: &Api<Node>, node: &str, key: &str, value: &str) -> Result<(), kube::Error> {
    let patch = Node { metadata: ObjectMeta { annotations: Some([(key.to_string(), value.to_string())].into()), ..Default::default() }, ..Default::default() };
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volume(name: &str, node: &str, path: &str, phase: &str) -> Arc<PersistentVolume> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
                "spec": {
                    "hostPath": {"path": path},
                    "persistentVolumeReclaimPolicy": "Delete",
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
                },
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_pvc_dirs_right_under_the_storage_dir() {
        let s = Path::new("/var/lib/k8s/storage");
        assert!(confined(s, Path::new("/var/lib/k8s/storage/pvc-1_ns_data")).is_some());
        for bad in ["/etc", "/var/lib/k8s/storage", "/var/lib/k8s/storage/other", "/var/lib/k8s/storage/pvc-1/../../..", "/var/lib/k8s/storage/x/pvc-1", "storage/pvc-1"] {
            assert!(confined(s, Path::new(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn dirs_made_open_and_released_ones_removed() {
        let root = tempfile::tempdir().unwrap();
        let s = root.path();
        let live = s.join("pvc-1_apps_a");
        let gone = s.join("pvc-2_apps_b");
        std::fs::create_dir_all(&gone).unwrap();
        std::fs::write(gone.join("data"), "x").unwrap();
        let outside = root.path().join("keep");
        std::fs::create_dir_all(&outside).unwrap();
        let all = vec![
            volume("pvc-1", "a1", live.to_str().unwrap(), "Bound"),
            volume("pvc-2", "a1", gone.to_str().unwrap(), "Released"),
            volume("pvc-3", "a1", outside.to_str().unwrap(), "Released"),
            volume("pvc-4", "other", s.join("pvc-4_x_y").to_str().unwrap(), "Bound"),
        ];
        assert_eq!(sync(&all, "a1", s), "pvc-2");
        assert_eq!(std::fs::metadata(&live).unwrap().permissions().mode() & 0o777, 0o777);
        assert!(!gone.exists() && outside.exists(), "a path outside the storage dir is never removed");
        assert!(!s.join("pvc-4_x_y").exists(), "another node's volume is not made here");
        assert_eq!(sync(&all, "a1", s), "pvc-2", "still reported while the volume exists");
    }
}

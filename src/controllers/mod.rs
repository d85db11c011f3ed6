//! Controllers inside the binary, run by every server as in-process
//! services: `manifests` (the auto-deployed manifests directory, which also
//! carries the built-in addons), `servicelb` (LoadBalancer Services on
//! the nodes' addresses) and `local_path` (the local-path StorageClass's
//! provisioner).

pub mod local_path;
pub mod manifests;
pub mod servicelb;

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::{Api, Client};

/// Every Node as the last watch event left them, shared by a controller's
/// reconciles; None until first listed (a decision taken before would see
/// no node at all).
#[derive(Clone, Default)]
pub struct Nodes(Arc<Mutex<Option<Vec<Arc<Node>>>>>);

impl Nodes {
    /// Keeps this set current; yields on every change, as a controller's
    /// `reconcile_all_on` trigger.
    pub fn follow(&self, client: Client) -> impl Stream<Item = ()> + Send + 'static {
        let set = self.0.clone();
        crate::kubeclient::follow(Api::<Node>::all(client), watcher::Config::default(), None).map(move |nodes| {
            *set.lock().unwrap() = Some(nodes);
        })
    }

    pub fn get(&self) -> Option<Vec<Arc<Node>>> {
        self.0.lock().unwrap().clone()
    }
}

//! The binary's own access to the Kubernetes API: kube-rs clients built
//! from our kubeconfigs (each identity has its own file), and the few
//! patterns every caller shares: waiting for the API server, waiting for a
//! Node to reach a state, following a set of objects, server-side apply.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::runtime::reflector::{self, Lookup};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub mod leader;
mod renewing;

/// Every object this binary writes names this field manager.
pub const FIELD_MANAGER: &str = "k8s";
/// How long one probe of `/readyz` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Every start waits on this (the node's bring-up follows the API server's
/// readiness), so a probe is a cheap loopback request every 100 ms rather
/// than up to half a second of start lost to the interval.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// A client with the identity and the server of the kubeconfig at `path`
/// (its current context).
pub async fn client(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("the kubeconfig {} is not usable", path.display()))?;
    // A client cert named by path may be renewed under us (the kubelet's).
    let client = match config.auth_info.client_certificate.clone() {
        Some(pair) => renewing::client(config, Path::new(&pair)),
        None => Client::try_from(config).map_err(anyhow::Error::from),
    };
    client.with_context(|| format!("cannot build an API client from {}", path.display()))
}

/// Waits until the API server answers `/readyz` with 200, for at most
/// `timeout`; the error carries the last answer, so a stuck start says why.
pub async fn wait_ready(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let request = http::Request::get("/readyz").body(Vec::new()).expect("a static request is valid");
        let last = match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("the API server is not ready after {timeout:?}: {last}");
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// Watches the Node `name` until `check` returns a value, for at most
/// `timeout`; `what` completes "node X not ..." in the error.
pub async fn wait_node<T>(client: &Client, name: &str, timeout: Duration, what: &str,
    check: impl Fn(&Node) -> Option<T>) -> anyhow::Result<T> {
    let api: Api<Node> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut nodes = watcher(api, config).backoff(Retry::default()).applied_objects().boxed();
    let mut last_error = None;
    let found = tokio::time::timeout(timeout, async {
        while let Some(item) = nodes.next().await {
            match item {
                Ok(node) => {
                    if let Some(v) = check(&node) {
                        return Some(v);
                    }
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(v)) => Ok(v),
        _ => match last_error {
            Some(e) => bail!("node {name} not {what} after {timeout:?} (last API error: {e})"),
            None => bail!("node {name} not {what} after {timeout:?}"),
        },
    }
}

/// How the binary's watches retry: 0.5 s doubling to at most 5 s. The
/// API servers of a small cluster restart (upgrades, a server's reboot),
/// and a node or `k8s upgrade apply` should see them back within seconds
/// rather than after kube-runtime's default of up to 30 s.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retry {
    attempts: u32,
}

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = RETRY_FIRST.saturating_mul(1 << self.attempts.min(10)).min(RETRY_MAX);
        self.attempts += 1;
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for Retry {
    fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// The node's pod CIDR, once the controller-manager allocated one.
pub fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref()?.pod_cidr.clone()
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The node's InternalIP (where other nodes reach it).
pub fn internal_ip(node: &Node) -> Option<IpAddr> {
    let addresses = node.status.as_ref()?.addresses.as_deref()?;
    addresses.iter().find(|a| a.type_ == "InternalIP")?.address.parse().ok()
}

/// Keeps a cache of the objects `api` and `config` select and yields the
/// whole set: once the first list is complete, after every change, and at
/// least every `resync` if given (so what the caller keeps outside the
/// cluster, such as kernel routes, is repaired even when nothing changes).
/// Never ends; API errors are retried with backoff, the cache serving
/// meanwhile.
pub fn follow<K>(api: Api<K>, config: watcher::Config, resync: Option<Duration>) -> impl Stream<Item = Vec<Arc<K>>> + Send
where
    K: Resource + Lookup + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (cache, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config)).backoff(Retry::default()).boxed();
    let resync = resync.unwrap_or(Duration::MAX);
    futures::stream::unfold((cache, events, false), move |(cache, mut events, mut listed)| async move {
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone)) => listed = true,
                    // A (re)list in progress: the cache swaps at InitDone.
                    Some(Ok(Event::Init | Event::InitApply(_))) => continue,
                    Some(Err(e)) => {
                        tracing::debug!("watch: {e}");
                        continue;
                    }
                    None => return None,
                },
                _ = tokio::time::sleep(resync) => {}
            }
            if listed {
                return Some((cache.state(), (cache, events, listed)));
            }
        }
    })
}

/// Applies every object of a multi-document YAML manifest (server-side
/// apply, forcing conflicts: a restart re-asserts the manifest without
/// fighting other field managers over fields it does not set).
pub async fn apply_manifest(client: &Client, manifest: &str) -> anyhow::Result<()> {
    for object in parse_manifest(manifest)? {
        apply_object(client, &object).await?;
    }
    Ok(())
}

/// The objects of a multi-document YAML (or JSON) manifest, in order; empty
/// documents are skipped. Errors say which document and, for YAML syntax,
/// the line and column.
pub fn parse_manifest(manifest: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(manifest).enumerate() {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document).map_err(|e| anyhow::anyhow!("document {}: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_yaml::from_value(value).map_err(|e| anyhow::anyhow!("document {} is not a Kubernetes object: {e}", i + 1))?;
        let has_types = object.types.as_ref().is_some_and(|t| !t.api_version.is_empty() && !t.kind.is_empty());
        if !has_types || object.metadata.name.as_deref().unwrap_or("").is_empty() {
            bail!("document {} is not a Kubernetes object: it needs apiVersion, kind and metadata.name", i + 1);
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Server-side applies one object (its namespace, or `default` for a
/// namespaced kind that names none, as kubectl does).
pub async fn apply_object(client: &Client, object: &DynamicObject) -> anyhow::Result<()> {
    let types = object.types.as_ref().context("a manifest object lacks apiVersion or kind")?;
    let name = object.name_any();
    let api = dynamic_api(client, &types.api_version, &types.kind, object.metadata.namespace.as_deref()).await?;
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("applying {} {name}", types.kind))?;
    Ok(())
}

/// Deletes one object named as in a manifest (namespace as in
/// [`apply_object`]); true when it was there. A kind the API server no
/// longer serves has no objects left to delete.
pub async fn delete_object(client: &Client, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> anyhow::Result<bool> {
    let api = match dynamic_api(client, api_version, kind, namespace).await {
        Ok(api) => api,
        Err(e) if e.chain().any(|c| c.downcast_ref::<kube::Error>().is_some_and(not_served)) => return Ok(false),
        Err(e) => return Err(e),
    };
    match api.delete(name, &kube::api::DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("deleting {kind} {name}"))),
    }
}

/// Discovery's answer for a group/version or kind the API server does not
/// serve (any more: a CRD deleted with its objects).
fn not_served(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Discovery(_)) || matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The dynamic API of a kind, scoped as discovery says.
async fn dynamic_api(client: &Client, api_version: &str, kind: &str, namespace: Option<&str>) -> anyhow::Result<Api<DynamicObject>> {
    let types = kube::core::TypeMeta { api_version: api_version.to_string(), kind: kind.to_string() };
    let gvk = GroupVersionKind::try_from(&types)?;
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the API server does not serve {api_version}/{kind}"))?;
    Ok(match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace.unwrap_or("default"), &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn retries_double_up_to_five_seconds_and_reset() {
        use kube::runtime::utils::Backoff;
        let mut r = Retry::default();
        let first: Vec<u64> = r.by_ref().take(6).map(|d| d.as_millis() as u64).collect();
        assert_eq!(first, [500, 1000, 2000, 4000, 5000, 5000]);
        r.reset();
        assert_eq!(r.next(), Some(RETRY_FIRST));
    }

    #[test]
    fn node_fields() {
        let n = node(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"podCIDR": "10.42.1.0/24"},
            "status": {
                "addresses": [{"type": "Hostname", "address": "a"}, {"type": "InternalIP", "address": "10.0.0.2"}],
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            },
        }));
        assert_eq!(pod_cidr(&n).as_deref(), Some("10.42.1.0/24"));
        assert_eq!(internal_ip(&n), Some("10.0.0.2".parse().unwrap()));
        assert!(node_ready(&n));
        let bare = node(serde_json::json!({"metadata": {"name": "b"}}));
        assert_eq!((pod_cidr(&bare), internal_ip(&bare), node_ready(&bare)), (None, None, false));
    }
}

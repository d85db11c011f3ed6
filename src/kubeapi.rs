//! A minimal Kubernetes API client for the supervisor's own needs (is the
//! API ready, has the node a pod CIDR, is it Ready), built from a
//! kubeconfig with an embedded client certificate.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;

use crate::components::http_ready;
use crate::https::HttpsClient;

pub struct Api {
    client: HttpsClient,
    host: String,
    port: u16,
}

#[derive(Deserialize)]
struct Kubeconfig {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: ClusterData,
}

#[derive(Deserialize)]
struct NamedUser {
    user: UserData,
}

#[derive(Deserialize)]
struct ClusterData {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca: String,
}

#[derive(Deserialize)]
struct UserData {
    #[serde(rename = "client-certificate-data")]
    cert: String,
    #[serde(rename = "client-key-data")]
    key: String,
}

impl Api {
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Api> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let kc: Kubeconfig = serde_yaml::from_str(&text).with_context(|| format!("{} is not a kubeconfig", path.display()))?;
        let (Some(cluster), Some(user)) = (kc.clusters.first(), kc.users.first()) else {
            bail!("{} has no cluster or no user", path.display());
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim()).context("bad base64 in kubeconfig");
        let (c, u) = (&cluster.cluster, &user.user);
        let client = HttpsClient::from_pem(&b64(&c.ca)?, &b64(&u.cert)?, &b64(&u.key)?)?;
        let hostport = c.server.trim_start_matches("https://").trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':').context("server URL without a port")?;
        Ok(Api { client, host: host.trim_matches(['[', ']']).to_string(), port: port.parse()? })
    }

    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        http_ready(&self.client, &self.host, self.port, "/readyz", timeout).await
    }

    /// GETs a path as JSON; None when it does not exist (404).
    pub async fn get(&self, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let (status, body) = self.client.get(&self.host, self.port, path).await?;
        match status {
            200 => Ok(Some(serde_json::from_str(&body).with_context(|| format!("GET {path}: bad JSON"))?)),
            404 => Ok(None),
            code => bail!("GET {path}: HTTP {code}: {}", body.trim()),
        }
    }

    /// Creates an object; false when it already exists.
    pub async fn create(&self, collection: &str, object: &serde_json::Value) -> anyhow::Result<bool> {
        let body = serde_json::to_vec(object)?;
        let (status, text) = self.client.request(&self.host, self.port, "POST", collection, Some(("application/json", &body))).await?;
        match status {
            200 | 201 => Ok(true),
            409 => Ok(false),
            code => bail!("POST {collection}: HTTP {code}: {}", text.trim()),
        }
    }

    /// Changes an object with a JSON merge patch.
    pub async fn merge_patch(&self, path: &str, patch: &serde_json::Value) -> anyhow::Result<()> {
        let body = serde_json::to_vec(patch)?;
        let (status, text) =
            self.client.request(&self.host, self.port, "PATCH", path, Some(("application/merge-patch+json", &body))).await?;
        match status {
            200 => Ok(()),
            code => bail!("PATCH {path}: HTTP {code}: {}", text.trim()),
        }
    }

    /// Deletes an object; false when there was none.
    pub async fn delete(&self, path: &str) -> anyhow::Result<bool> {
        let (status, text) = self.client.request(&self.host, self.port, "DELETE", path, None).await?;
        match status {
            200 | 202 => Ok(true),
            404 => Ok(false),
            code => bail!("DELETE {path}: HTTP {code}: {}", text.trim()),
        }
    }

    /// Polls the node until `check` returns a value.
    pub async fn wait_node<T>(&self, name: &str, timeout: Duration, what: &str,
        check: impl Fn(&serde_json::Value) -> Option<T>) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let path = format!("/api/v1/nodes/{name}");
        loop {
            if let Ok(Some(node)) = self.get(&path).await {
                if let Some(v) = check(&node) {
                    return Ok(v);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("node {name} not {what} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The node's pod CIDR, once the controller-manager allocated one.
pub fn pod_cidr(node: &serde_json::Value) -> Option<String> {
    node.pointer("/spec/podCIDR")?.as_str().map(String::from)
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &serde_json::Value) -> Option<()> {
    let conditions = node.pointer("/status/conditions")?.as_array()?;
    conditions
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
        .then_some(())
}

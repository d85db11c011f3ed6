//! An agent's local load balancer in front of the API servers (as k3s's):
//! kubelet, kube-proxy and the agent itself talk to 127.0.0.1:6444, which
//! forwards each connection to a live server, so a node keeps working
//! while any server is down. The server list follows the `kubernetes`
//! Endpoints (the live API servers) and is kept on disk for restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

use crate::fsutil::write_atomic;
use crate::kubeapi::Api;

pub const LISTEN: &str = "127.0.0.1:6444";
pub const LOCAL_URL: &str = "https://127.0.0.1:6444";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REFRESH: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Balancer {
    servers: Arc<RwLock<Vec<SocketAddr>>>,
    file: PathBuf,
}

impl Balancer {
    /// Listens on [`LISTEN`]; `initial` is used when `file` holds no list yet.
    pub async fn start(file: &Path, initial: SocketAddr) -> anyhow::Result<Balancer> {
        let saved: Vec<SocketAddr> = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let servers = if saved.is_empty() { vec![initial] } else { saved };
        let listener = TcpListener::bind(LISTEN)
            .await
            .with_context(|| format!("cannot listen on {LISTEN} for the API load balancer; is another agent running?"))?;
        let balancer = Balancer { servers: Arc::new(RwLock::new(servers)), file: file.to_path_buf() };
        tokio::spawn(balancer.clone().serve(listener));
        Ok(balancer)
    }

    async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let servers = self.servers.read().expect("not poisoned").clone();
            tokio::spawn(async move {
                if let Some(mut server) = connect_any(&servers).await {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    }

    /// Keeps the list in step with the live API servers, until dropped.
    pub async fn follow(self, api: Api) {
        loop {
            tokio::time::sleep(REFRESH).await;
            match api.get("/api/v1/namespaces/default/endpoints?fieldSelector=metadata.name%3Dkubernetes").await {
                Ok(Some(list)) => self.update(servers_of(&list)),
                Ok(None) => {}
                Err(e) => tracing::debug!("listing API servers: {e:#}"),
            }
        }
    }

    fn update(&self, found: Vec<SocketAddr>) {
        if found.is_empty() {
            return;
        }
        let mut servers = self.servers.write().expect("not poisoned");
        if *servers != found {
            tracing::info!(servers = ?found, "API servers changed");
            if let Ok(json) = serde_json::to_vec(&found) {
                let _ = write_atomic(&self.file, &json, 0o644);
            }
            *servers = found;
        }
    }
}

/// The first server that accepts, starting at a random one so that nodes
/// spread over the servers.
async fn connect_any(servers: &[SocketAddr]) -> Option<TcpStream> {
    let start = std::process::id() as usize % servers.len().max(1);
    for addr in servers.iter().cycle().skip(start).take(servers.len()) {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            _ => tracing::debug!(%addr, "API server unreachable; trying the next"),
        }
    }
    tracing::warn!("no API server reachable");
    None
}

/// Addresses of the `kubernetes` Endpoints (sorted, for a stable list).
fn servers_of(list: &serde_json::Value) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for subset in list.pointer("/items/0/subsets").and_then(|s| s.as_array()).into_iter().flatten() {
        let port = subset.pointer("/ports/0/port").and_then(|p| p.as_u64()).unwrap_or(6443) as u16;
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|ip| ip.parse().ok()) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn servers_come_from_the_kubernetes_endpoints() {
        let list = serde_json::json!({"items": [{"subsets": [{
            "addresses": [{"ip": "10.0.0.12"}, {"ip": "10.0.0.11"}],
            "ports": [{"name": "https", "port": 6443}]}]}]});
        let s = super::servers_of(&list);
        assert_eq!(s.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["10.0.0.11:6443", "10.0.0.12:6443"]);
        assert!(super::servers_of(&serde_json::json!({"items": []})).is_empty());
    }
}

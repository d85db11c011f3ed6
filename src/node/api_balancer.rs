//! An agent's local load balancer in front of the API servers (as k3s's):
//! kubelet, kube-proxy and the agent itself talk to 127.0.0.1:6444, which
//! forwards each connection to a live server, so a node keeps working
//! while any server is down. The server list follows the `kubernetes`
//! service's EndpointSlices (the live API servers, a watch) and is kept on
//! disk for restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};

use crate::fsutil::write_atomic;
use crate::kubeclient;

pub const LISTEN: &str = "127.0.0.1:6444";
pub const LOCAL_URL: &str = "https://127.0.0.1:6444";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The load balancer, listening; [`Balancer::run`] serves it.
pub struct Balancer {
    listener: TcpListener,
    servers: Servers,
}

impl Balancer {
    /// Listens on [`LISTEN`]; `initial` is used when `file` holds no list yet.
    pub async fn bind(file: &Path, initial: SocketAddr) -> anyhow::Result<Balancer> {
        let saved: Vec<SocketAddr> = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let list = if saved.is_empty() { vec![initial] } else { saved };
        let listener = TcpListener::bind(LISTEN)
            .await
            .with_context(|| format!("cannot listen on {LISTEN} for the API load balancer; is another agent running?"))?;
        Ok(Balancer { listener, servers: Servers { list: Arc::new(RwLock::new(list)), file: file.to_path_buf() } })
    }

    /// Forwards connections and keeps the server list in step with the
    /// live API servers, until dropped. `client` may list and watch
    /// EndpointSlices (kube-proxy's may).
    pub async fn run(self, client: Client) {
        tokio::join!(serve(self.listener, self.servers.clone()), self.servers.follow(client));
    }
}

async fn serve(listener: TcpListener, servers: Servers) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let servers = servers.list.read().expect("not poisoned").clone();
        tokio::spawn(async move {
            if let Some(mut server) = connect_any(&servers).await {
                let mut client = client;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// The live API servers, shared by the listener and the follower, and
/// saved to `file` for restarts.
#[derive(Clone)]
struct Servers {
    list: Arc<RwLock<Vec<SocketAddr>>>,
    file: PathBuf,
}

impl Servers {
    async fn follow(&self, client: Client) {
        let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
        let selector = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}=kubernetes"));
        let mut snapshots = std::pin::pin!(kubeclient::follow(slices, selector, None));
        while let Some(slices) = snapshots.next().await {
            self.update(servers_of(&slices));
        }
    }

    fn update(&self, found: Vec<SocketAddr>) {
        if found.is_empty() {
            return;
        }
        let mut servers = self.list.write().expect("not poisoned");
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

/// The ready addresses of the `kubernetes` service's EndpointSlices
/// (sorted, for a stable list).
fn servers_of(slices: &[Arc<EndpointSlice>]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find_map(|p| p.port).unwrap_or(6443) as u16;
        let ready = slice.endpoints.iter().flatten().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false));
        for ip in ready.flat_map(|e| &e.addresses).filter_map(|a| a.parse().ok()) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn servers_are_the_ready_endpoints_of_the_kubernetes_slices() {
        let slices = [slice(serde_json::json!({
            "metadata": {"name": "kubernetes"}, "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.12"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.11"]},
                {"addresses": ["10.0.0.13"], "conditions": {"ready": false}},
            ],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }))];
        let s = servers_of(&slices);
        assert_eq!(s.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["10.0.0.11:6443", "10.0.0.12:6443"]);
        assert!(servers_of(&[]).is_empty());
    }
}

//! HA mode: the carried etcd, one member per server, mTLS on the client
//! (2379) and peer (2380) ports with its own CA. The first server starts a
//! one-member cluster (`cluster-init`); each other server is added through
//! the join endpoint as a learner, starts, catches up and promotes itself
//! to a voting member before its control plane starts. A server that is
//! reset leaves the membership first.

pub mod cli;
pub mod client;
pub mod health;
pub mod membership;
pub mod seed;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::components::Spec;
use crate::payload::Components;
use crate::pki::Pki;
pub use client::Client;

pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
/// Where this server's own member answers (the apiserver uses it alone).
pub const LOCAL: &str = "https://127.0.0.1:2379";

fn url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(_) => format!("https://{ip}:{port}"),
        IpAddr::V6(_) => format!("https://[{ip}]:{port}"),
    }
}

pub fn peer_url(ip: IpAddr) -> String {
    url(ip, PEER_PORT)
}

pub fn client_url(ip: IpAddr) -> String {
    url(ip, CLIENT_PORT)
}

pub fn data_dir(k8s_data_dir: &Path) -> PathBuf {
    k8s_data_dir.join("etcd")
}

/// Whether this server already is (or was) a member: etcd then ignores
/// the initial-cluster settings and starts from its own data.
pub fn has_data(k8s_data_dir: &Path) -> bool {
    data_dir(k8s_data_dir).join("member").is_dir()
}

/// How the member starts.
pub enum Bootstrap {
    /// A new cluster of one (or a restart: etcd then uses its data).
    New,
    /// Joining: the members after our addition, as `name=peer-url,…`.
    Join { initial_cluster: String },
}

pub struct Member<'a> {
    pub name: &'a str,
    pub ip: IpAddr,
    pub data_dir: &'a Path,
    pub logs: &'a Path,
}

pub fn spec(c: &Components, pki: &Pki, m: &Member, boot: &Bootstrap) -> Spec {
    let p = |path: PathBuf| path.display().to_string();
    let (initial_cluster, state) = match boot {
        Bootstrap::New => (format!("{}={}", m.name, peer_url(m.ip)), "new"),
        Bootstrap::Join { initial_cluster } => (initial_cluster.clone(), "existing"),
    };
    let args = vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", p(data_dir(m.data_dir))),
        format!("--listen-client-urls={LOCAL},{}", client_url(m.ip)),
        format!("--advertise-client-urls={}", client_url(m.ip)),
        format!("--listen-peer-urls={}", peer_url(m.ip)),
        format!("--initial-advertise-peer-urls={}", peer_url(m.ip)),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        "--initial-cluster-token=k8s".into(),
        "--client-cert-auth".into(),
        format!("--trusted-ca-file={}", p(pki.etcd_ca_cert())),
        format!("--cert-file={}", p(pki.etcd_server_cert())),
        format!("--key-file={}", p(pki.etcd_server_key())),
        "--peer-client-cert-auth".into(),
        format!("--peer-trusted-ca-file={}", p(pki.etcd_ca_cert())),
        format!("--peer-cert-file={}", p(pki.etcd_peer_cert())),
        format!("--peer-key-file={}", p(pki.etcd_peer_key())),
        "--listen-metrics-urls=http://127.0.0.1:2381".into(),
        // The apiserver compacts every 5 minutes; a bounded history is
        // still kept by etcd's own snapshots.
        "--snapshot-count=10000".into(),
        "--log-level=warn".into(),
    ];
    Spec {
        name: "etcd".into(),
        program: c.bin("etcd"),
        args,
        env: vec![],
        log: m.logs.join("etcd.log"),
    }
}

/// Waits until the local member answers Status (learners do too).
pub async fn wait_local(pki: &Pki, timeout: Duration) -> anyhow::Result<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match Client::connect(&[LOCAL.to_string()], pki).await {
            Ok(c) => match c.status().await {
                Ok(_) => return Ok(c),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last).context(format!("etcd did not start within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

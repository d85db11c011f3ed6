//! The cluster's state: SQLite behind our etcd API in this process (one
//! server), or a member of the carried etcd (HA: `cluster-init` on the
//! first server, `server` + `token-file` on the others).

use std::time::Duration;

use anyhow::{bail, Context};

use super::config::{Config, Datastore};
use crate::host::Layout;
use crate::components::Supervisor;
use crate::etcd::{self, membership, Bootstrap};
use crate::join::{self, token::Token, ServerBundle};
use crate::payload::Components;
use crate::pki::Pki;
use crate::{datastore, fsutil};

const ETCD_START_TIMEOUT: Duration = Duration::from_secs(120);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a joining server waits while others join before it.
const JOIN_PATIENCE: Duration = Duration::from_secs(600);

/// A joining server without etcd data asks the cluster for its shared PKI
/// and a learner's place, before its own PKI is made from those CAs.
pub async fn join_if_needed(cfg: &Config, layout: &Layout) -> anyhow::Result<Option<ServerBundle>> {
    let Datastore::EtcdJoin { server, token } = &cfg.datastore else { return Ok(None) };
    if etcd::has_data(&cfg.data_dir) {
        return Ok(None);
    }
    let token = Token::parse(&token.read()?).with_context(|| token.to_string())?;
    tracing::info!(%server, "joining the cluster's etcd");
    let bundle = join::client::join_server(server, &token, &cfg.node_name, cfg.node_ip, JOIN_PATIENCE).await?;
    check_settings(cfg, &bundle)?;
    write_shared_pki(layout, &bundle)?;
    Ok(Some(bundle))
}

/// A server must run the cluster's networks: a mismatch would route pods
/// and services differently on different servers.
fn check_settings(cfg: &Config, b: &ServerBundle) -> anyhow::Result<()> {
    let pairs = [
        ("cluster-cidr", cfg.cluster_cidr.clone(), b.cluster_cidr.clone()),
        ("service-cidr", cfg.service_cidr.clone(), b.service_cidr.clone()),
        ("cluster-dns", cfg.cluster_dns.to_string(), b.cluster_dns.to_string()),
        ("cluster-domain", cfg.cluster_domain.clone(), b.cluster_domain.clone()),
        ("pod-network", cfg.pod_network.to_string(), b.pod_network.to_string()),
        ("profile", cfg.profile.to_string(), b.profile.to_string()),
    ];
    for (key, ours, theirs) in pairs {
        if ours != theirs {
            bail!("{key} is {ours} here but {theirs} in the cluster being joined; set {key}: {theirs} in the config");
        }
    }
    Ok(())
}

fn write_shared_pki(layout: &Layout, b: &ServerBundle) -> anyhow::Result<()> {
    let dir = layout.pki_dir();
    for (name, pem) in &b.files {
        if name.contains("..") || name.starts_with('/') {
            bail!("the join endpoint sent a file outside the PKI dir: {name}");
        }
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == *pem => continue,
            Ok(_) => bail!("{} belongs to another cluster; this host was a server elsewhere: run `k8s reset` on it first", path.display()),
            Err(_) => {}
        }
        let secret = name.ends_with(".key") || name.ends_with(".yaml");
        let mode = if secret { 0o600 } else { 0o644 };
        std::fs::create_dir_all(path.parent().expect("under the PKI dir"))?;
        fsutil::write_atomic(&path, pem.as_bytes(), mode)?;
    }
    Ok(())
}

/// Starts the store under the supervisor, first of all components so it
/// stops last: SQLite behind our etcd API as an in-process service, or an
/// etcd member as a child process (waiting until it votes).
pub async fn start(cfg: &Config, layout: &Layout, c: &Components, pki: &Pki, sup: &mut Supervisor,
    joined: Option<ServerBundle>) -> anyhow::Result<()> {
    if cfg.datastore == Datastore::Sqlite {
        let tls = cfg.datastore_tls();
        let running = datastore::start(datastore::Config {
            data_dir: layout.datastore_dir(),
            listen: vec![datastore::Listen::Unix { path: layout.datastore_socket(), tls }],
            cert_file: tls.then(|| pki.etcd_server_cert()),
            key_file: tls.then(|| pki.etcd_server_key()),
            trusted_ca_file: tls.then(|| pki.etcd_ca_cert()),
            tuning: Default::default(),
        })
        .await
        .context("starting the datastore")?;
        sup.spawn("datastore", |mut stop| async move {
            stop.requested().await;
            running.stop().await
        });
        return Ok(());
    }
    let logs = layout.logs_dir();
    if cfg.datastore == Datastore::EtcdInit && !etcd::has_data(&cfg.data_dir) && datastore::db_path(&layout.datastore_dir()).exists() {
        grow_from_sqlite(cfg, layout, c, pki).await?;
    }
    let member = etcd::Member { name: &cfg.node_name, ip: cfg.node_ip, data_dir: &cfg.data_dir, logs: &logs };
    let boot = match &joined {
        Some(b) => Bootstrap::Join { initial_cluster: b.initial_cluster.clone() },
        None => Bootstrap::New,
    };
    sup.start(etcd::spec(c, pki, &member, &boot));
    let local = etcd::wait_local(pki, ETCD_START_TIMEOUT)
        .await
        .with_context(|| format!("see {}", logs.join("etcd.log").display()))?;
    let others = match joined {
        Some(b) => b.etcd_endpoints,
        None => voting_peers(&local, cfg).await,
    };
    membership::promote_self(pki, &local, &others, PROMOTE_TIMEOUT).await?;
    tracing::info!(endpoint = etcd::LOCAL, "etcd member ready");
    Ok(())
}

/// A single server restarted with `cluster-init` (k3s's way from SQLite to
/// HA): its SQLite data becomes the new etcd member's, at a revision above
/// every one the SQLite store handed out (older ones compacted: running
/// kubelets and informers list again), and the SQLite files are kept as
/// `server/db.migrated`. Keys with a lease (Events, the API servers'
/// endpoint leases: short-lived, and recreated) are not carried over.
async fn grow_from_sqlite(cfg: &Config, layout: &Layout, c: &Components, pki: &Pki) -> anyhow::Result<()> {
    let db_dir = layout.datastore_dir();
    let (kvs, revision) = datastore::live_keys(&db_dir).context("reading the SQLite datastore to move it into etcd")?;
    let total = kvs.len();
    let kvs: Vec<(Vec<u8>, Vec<u8>)> = kvs.into_iter().filter(|kv| kv.lease == 0).map(|kv| (kv.key, kv.value)).collect();
    tracing::info!(keys = kvs.len(), leased_left_out = total - kvs.len(), revision, "moving the SQLite datastore into etcd (cluster-init)");
    let target = etcd::seed::Target { components: c, k8s_data_dir: &cfg.data_dir, name: &cfg.node_name, ip: cfg.node_ip };
    let new_revision = etcd::seed::from_keys(&target, pki, &kvs, revision, &layout.logs_dir()).await?;
    let kept = db_dir.with_extension("migrated");
    std::fs::rename(&db_dir, &kept).with_context(|| format!("keeping the SQLite datastore as {}", kept.display()))?;
    tracing::info!(revision = new_revision, kept = %kept.display(), "SQLite datastore moved into etcd");
    Ok(())
}

/// Client URLs of the other voting members (for a learner that restarted
/// before it was promoted).
async fn voting_peers(local: &etcd::Client, cfg: &Config) -> Vec<String> {
    let own = etcd::client_url(cfg.node_ip);
    let members = local.members().await.unwrap_or_default();
    members.into_iter().filter(|m| !m.is_learner).flat_map(|m| m.client_ur_ls).filter(|u| *u != own).collect()
}

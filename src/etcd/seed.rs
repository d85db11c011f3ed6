//! A new member's data made from existing state, instead of starting empty
//! or joining: from an etcd snapshot (a backup being restored: `etcdutl
//! snapshot restore`), or from keys (a single SQLite server becoming the
//! first server of an HA cluster: the keys go into a temporary etcd on
//! loopback, whose snapshot is then restored the same way).
//!
//! Either way the member's revision is raised past every revision the old
//! store handed out, and the older ones are marked compacted (etcdutl's
//! `--bump-revision` with `--mark-compacted`): clients that kept a
//! resourceVersion from before are told to list again instead of waiting
//! for revisions that would mean something else now.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Client;
use crate::payload::Components;
use crate::pki::Pki;

/// The member the data is for.
pub struct Target<'a> {
    pub components: &'a Components,
    /// The k8s data dir (the member's data goes to [`super::data_dir`] of it).
    pub k8s_data_dir: &'a Path,
    pub name: &'a str,
    pub ip: IpAddr,
}

/// The member's data from an etcd snapshot, its revision raised by `bump`.
pub fn from_snapshot(t: &Target, snapshot: &Path, bump: i64) -> anyhow::Result<()> {
    let peer = super::peer_url(t.ip);
    let dest = super::data_dir(t.k8s_data_dir);
    let out = std::process::Command::new(t.components.bin("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg(format!("--data-dir={}", dest.display()))
        .arg(format!("--name={}", t.name))
        .arg(format!("--initial-cluster={}={peer}", t.name))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg("--initial-cluster-token=k8s")
        .arg(format!("--bump-revision={bump}"))
        .arg("--mark-compacted")
        .output()
        .context("running etcdutl from the payload")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dest);
        bail!("etcdutl snapshot restore failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    crate::fsutil::set_mode(&dest, 0o700)?;
    Ok(())
}

/// The member's data holding `kvs` (no leases), at a revision above
/// `above`; returns that revision. `logs` gets the temporary etcd's log.
pub async fn from_keys(t: &Target<'_>, pki: &Pki, kvs: &[(Vec<u8>, Vec<u8>)], above: i64, logs: &Path) -> anyhow::Result<i64> {
    let work = t.k8s_data_dir.join("etcd-seed");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    crate::fsutil::set_mode(&work, 0o700)?;
    let snapshot = work.join("snapshot.db");
    let revision = {
        let etcd = Temporary::start(t.components, pki, &work, logs).await?;
        etcd.client.put_all(kvs).await.context("writing the keys into the temporary etcd")?;
        etcd.client.snapshot_to(&snapshot).await?
    };
    // Past `above` whatever the snapshot's own revision is.
    let bump = above + 1_000;
    from_snapshot(t, &snapshot, bump)?;
    std::fs::remove_dir_all(&work)?;
    Ok(revision + bump)
}

/// An etcd of one member on loopback ports (peer over plain HTTP: it has
/// no peers), killed when dropped.
struct Temporary {
    _child: tokio::process::Child,
    client: Client,
}

impl Temporary {
    async fn start(c: &Components, pki: &Pki, dir: &Path, logs: &Path) -> anyhow::Result<Temporary> {
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("https://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(logs.join("etcd-seed.log"))?;
        let child = tokio::process::Command::new(c.bin("etcd"))
            .arg("--name=seed")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=seed={peer_url}"))
            .arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", pki.etcd_ca_cert().display()))
            .arg(format!("--cert-file={}", pki.etcd_server_cert().display()))
            .arg(format!("--key-file={}", pki.etcd_server_key().display()))
            .arg("--log-level=warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting a temporary etcd")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = Client::connect(std::slice::from_ref(&client_url), pki).await {
                if client.status().await.is_ok() {
                    return Ok(Temporary { _child: child, client });
                }
            }
            if Instant::now() >= deadline {
                bail!("the temporary etcd did not start in 60 s; see {}", logs.join("etcd-seed.log").display());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A TCP port free on loopback now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

//! `k8s etcd members` and `k8s etcd remove-member NAME`, on a server of an
//! HA cluster.

use std::path::Path;

use anyhow::bail;

use super::{membership, Client, LOCAL};
use crate::pki::Pki;

fn pki(data_dir: &Path) -> anyhow::Result<Pki> {
    let pki = Pki { dir: crate::host::Layout::new(data_dir).pki_dir() };
    if !pki.etcd_ca_cert().exists() {
        bail!("{} has no etcd certificates: this is not a server of an HA cluster (a single server keeps its state in SQLite)", pki.dir.display());
    }
    Ok(pki)
}

pub async fn members(data_dir: &Path) -> anyhow::Result<()> {
    let pki = pki(data_dir)?;
    let client = Client::connect(&[LOCAL.to_string()], &pki).await?;
    let leader = client.status().await?.leader;
    println!("{:<20} {:<16} {:<8} {:<28} CLIENT", "NAME", "ID", "ROLE", "PEER");
    for m in client.members().await? {
        let role = if m.is_learner { "learner" } else if m.id == leader { "leader" } else { "voter" };
        let name = if m.name.is_empty() { "(not started)" } else { &m.name };
        println!("{name:<20} {:<16x} {role:<8} {:<28} {}", m.id, m.peer_ur_ls.join(","), m.client_ur_ls.join(","));
    }
    Ok(())
}

pub async fn remove_member(data_dir: &Path, name: &str) -> anyhow::Result<()> {
    membership::remove_by_name(&pki(data_dir)?, name).await?;
    println!("etcd member {name} removed");
    Ok(())
}

//! `k8s token create|list|revoke|rotate`, run on a server as root (it uses
//! the admin kubeconfig and the cluster CA).

use std::path::Path;

use anyhow::Context;

use super::token::Role;
use super::tokens;
use crate::cli::TokenCommand;
use crate::host::config::Local;
use crate::kubeclient;

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    let local = Local::resolve(match &cmd {
        TokenCommand::Create { data_dir, .. } | TokenCommand::Rotate { data_dir, .. } => data_dir.data_dir.clone(),
        TokenCommand::List | TokenCommand::Revoke { .. } => None,
    })?;
    let api = kubeclient::client(&local.admin_kubeconfig).await.context("token commands run on a server, as root")?;
    let data_dir = &local.data_dir;
    match cmd {
        TokenCommand::Create { role, ttl, description, .. } => {
            let ca = cluster_ca(data_dir)?;
            let token = tokens::create(&api, &ca, Role::parse(&role)?, ttl, &description).await?;
            println!("{token}");
        }
        TokenCommand::Rotate { role, .. } => {
            let ca = cluster_ca(data_dir)?;
            let role = Role::parse(&role)?;
            let (token, old) = tokens::rotate_default(&api, data_dir, &ca, role).await?;
            eprintln!(
                "the default {} token is now the one in {} ({}); token {old} is revoked. \
                 Nodes already joined keep running; those that join from now on need the new token",
                role.as_str(), tokens::file(data_dir, role).display(), token.id
            );
            println!("{token}");
        }
        TokenCommand::List => {
            println!("{:<8} {:<8} {:<22} {}", "ID", "ROLE", "EXPIRES", "DESCRIPTION");
            for r in tokens::list(&api).await? {
                let expires = r.expires.map_or("never".to_string(), |e| format!("{e} (unix)"));
                println!("{:<8} {:<8} {:<22} {}", r.id, r.role.as_str(), expires, r.description);
            }
        }
        TokenCommand::Revoke { id } => {
            if tokens::revoke(&api, &id).await? {
                println!("token {id} revoked");
            } else {
                anyhow::bail!("no token with id {id} (see `k8s token list`)");
            }
        }
    }
    Ok(())
}

fn cluster_ca(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let ca_path = crate::pki::Pki { dir: crate::host::Layout::new(data_dir).pki_dir() }.ca_cert();
    std::fs::read(&ca_path).with_context(|| format!("cannot read the cluster CA {}", ca_path.display()))
}

//! `k8s token create|list|revoke`, run on a server as root (it uses the
//! admin kubeconfig and the cluster CA).

use std::path::Path;

use anyhow::Context;

use super::token::Role;
use super::tokens;
use crate::cli::TokenCommand;
use crate::kubeclient;
use crate::host::paths::ADMIN_KUBECONFIG;

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    let api = kubeclient::client(Path::new(ADMIN_KUBECONFIG))
        .await
        .context("token commands run on a server, as root")?;
    match cmd {
        TokenCommand::Create { role, ttl, description, data_dir } => {
            let role = Role::parse(&role)?;
            let ca_path = crate::pki::Pki { dir: crate::host::Layout::new(&data_dir.data_dir).pki_dir() }.ca_cert();
            let ca = std::fs::read(&ca_path).with_context(|| format!("cannot read the cluster CA {}", ca_path.display()))?;
            let token = tokens::create(&api, &ca, role, ttl, &description).await?;
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

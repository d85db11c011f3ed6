//! The joiner's side: pin the cluster CA with the token's hash, then ask
//! for this node's credentials over a connection that trusts only it.

use anyhow::{bail, Context};

use super::token::{ca_hash, Token};
use super::{AgentConfig, AgentRequest, ServerBundle, ServerRequest};
use crate::https::HttpsClient;

/// `https://HOST:PORT` → (host, port).
pub fn parse_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.strip_prefix("https://").with_context(|| format!("{url}: the server URL must start with https://"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().with_context(|| format!("{url}: bad port"))?),
        None => (rest, super::DEFAULT_PORT),
    };
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Fetches the server's CA and checks it against the token.
pub async fn pinned_ca(host: &str, port: u16, token: &Token) -> anyhow::Result<String> {
    let (status, ca) = HttpsClient::unverified()
        .get(host, port, "/cacerts")
        .await
        .with_context(|| format!("cannot reach the join endpoint https://{host}:{port}; is the server up and the port open?"))?;
    if status != 200 {
        bail!("https://{host}:{port}/cacerts answered HTTP {status}; is that a k8s server's join port?");
    }
    if ca_hash(ca.as_bytes()) != token.ca_hash {
        bail!("the server at https://{host}:{port} has a different cluster CA than the token names: wrong server or wrong token (or someone in between); nothing was sent");
    }
    Ok(ca)
}

pub async fn join_agent(server: &str, token: &Token, node_name: &str, node_ip: std::net::IpAddr, node_password: &str)
    -> anyhow::Result<AgentConfig> {
    let req = AgentRequest { token: token.to_string(), node_name: node_name.into(), node_ip, node_password: node_password.into() };
    post(server, token, "/v1/join/agent", &req, "agent").await
}

/// Joins an HA cluster's etcd as a learner. A busy cluster (another server
/// joining, or one that has just joined) is asked again for up to `patience`.
pub async fn join_server(server: &str, token: &Token, node_name: &str, node_ip: std::net::IpAddr,
    patience: std::time::Duration) -> anyhow::Result<ServerBundle> {
    let req = ServerRequest { token: token.to_string(), node_name: node_name.into(), node_ip };
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match post(server, token, "/v1/join/server", &req, "server").await {
            Err(e) if e.downcast_ref::<Busy>().is_some() && tokio::time::Instant::now() < deadline => {
                tracing::info!("{e}; asking again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the server is busy: {0}")]
struct Busy(String);

async fn post<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    server: &str, token: &Token, path: &str, req: &Req, role: &str) -> anyhow::Result<Resp> {
    let (host, port) = parse_url(server)?;
    let ca = pinned_ca(&host, port, token).await?;
    let client = HttpsClient::anonymous(ca.as_bytes())?;
    let body = serde_json::to_vec(req)?;
    let (status, text) = client
        .request(&host, port, "POST", path, Some(("application/json", &body)))
        .await
        .with_context(|| format!("joining through https://{host}:{port}"))?;
    match status {
        200 => Ok(serde_json::from_str(&text).context("the join endpoint sent a malformed answer")?),
        401 => bail!("the server refused the token: {}; create one on a server with `k8s token create --role {role}`", text.trim()),
        409 => Err(Busy(text.trim().to_string()).into()),
        429 => bail!("the server holds off this address after wrong tokens: {}", text.trim()),
        403 => bail!("the server refused: {}", text.trim()),
        code => bail!("joining failed: HTTP {code}: {}", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(super::parse_url("https://10.0.0.1:9345").unwrap(), ("10.0.0.1".into(), 9345));
        assert_eq!(super::parse_url("https://srv/").unwrap(), ("srv".into(), 9345));
        assert!(super::parse_url("http://srv:9345").is_err());
    }
}

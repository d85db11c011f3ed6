//! Readiness probes: an HTTPS GET against a component's health endpoint
//! (e.g. kube-apiserver's `/readyz`), trusting only the cluster CA and
//! presenting a client certificate.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// A reusable TLS client for probes.
#[derive(Clone)]
pub struct HttpsProbe {
    config: Arc<rustls::ClientConfig>,
}

impl HttpsProbe {
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> anyhow::Result<HttpsProbe> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &ca[..]) {
            roots.add(c?)?;
        }
        let chain = rustls_pemfile::certs(&mut &cert[..]).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut &key[..])?.context("no private key")?;
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(HttpsProbe { config: Arc::new(config) })
    }

    /// GETs `path` from `host:port`; returns the status code and body.
    pub async fn get(&self, host: &str, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let name = ServerName::try_from(host.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp).await?;
        // HTTP/1.0: the answer is never chunked and ends when the server closes.
        let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        tls.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw).await.or_else(|e| {
            // Servers may close without close_notify after Connection: close.
            if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(0) } else { Err(e) }
        })?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("malformed HTTP response")?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Ok((status, body))
    }
}

/// Polls until GET returns 200, for at most `timeout`; the error carries the
/// last answer so a stuck start says why.
pub async fn http_ready(probe: &HttpsProbe, host: &str, port: u16, path: &str, timeout: Duration)
    -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), probe.get(host, port, path)).await {
            Ok(Ok((200, _))) => return Ok(()),
            Ok(Ok((code, body))) => last = format!("HTTP {code}: {}", body.trim()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("https://{host}:{port}{path} not ready after {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

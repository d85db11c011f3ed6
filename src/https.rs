//! The join client's HTTPS: a cluster's join endpoint is not the
//! Kubernetes API, and a joiner has no kubeconfig yet. It fetches the CA
//! unverified (then checks it against the token's pinned hash) and from
//! then on trusts only that CA. It speaks HTTP/1.0.

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// A reusable TLS client configuration.
#[derive(Clone)]
pub struct HttpsClient {
    config: Arc<rustls::ClientConfig>,
}

impl HttpsClient {
    /// Trusts `ca` only and presents no client certificate.
    pub fn anonymous(ca: &[u8]) -> anyhow::Result<HttpsClient> {
        let config = rustls::ClientConfig::builder().with_root_certificates(roots(ca)?).with_no_client_auth();
        Ok(HttpsClient { config: Arc::new(config) })
    }

    /// Trusts any server: only for fetching a CA whose hash the caller
    /// then checks against a pinned one (the join token).
    pub fn unverified() -> HttpsClient {
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        HttpsClient { config: Arc::new(config) }
    }

    /// GETs `path` from `host:port`; returns the status code and body.
    pub async fn get(&self, host: &str, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
        self.request(host, port, "GET", path, None).await
    }

    /// One HTTP/1.0 request (never chunked; the answer ends when the
    /// server closes); `body` is a content type and the bytes.
    pub async fn request(&self, host: &str, port: u16, method: &str, path: &str, body: Option<(&str, &[u8])>)
        -> anyhow::Result<(u16, String)> {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let name = ServerName::try_from(host.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp).await?;
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
        if let Some((content_type, bytes)) = body {
            req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", bytes.len()));
        }
        req.push_str("\r\n");
        tls.write_all(req.as_bytes()).await?;
        if let Some((_, bytes)) = body {
            tls.write_all(bytes).await?;
        }
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw).await.or_else(|e| {
            // Servers may close without close_notify after an HTTP/1.0 answer.
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

fn roots(ca: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c?)?;
    }
    Ok(roots)
}

/// See [`HttpsClient::unverified`]. Signatures are still checked, so the
/// peer holds the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(&self, _: &rustls::pki_types::CertificateDer<'_>, _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>, _: &[u8], _: rustls::pki_types::UnixTime)
        -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

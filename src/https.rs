//! HTTPS to a server's join endpoint (not the Kubernetes API): a joiner has
//! no kubeconfig yet, so it fetches the CA unverified (then checks it
//! against the token's pinned hash) and from then on trusts only that CA;
//! a node fetching an upgrade's binary presents its kubelet certificate.
//! It speaks HTTP/1.0.

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// The most a join answer may hold (the largest, a server's bundle, is tens
/// of kB) and how long it may take: a server that sends more, or stalls, is
/// not waited for.
const RESPONSE_MAX: u64 = 16 << 20;
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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

    /// Trusts `ca` only and presents a client certificate (a node fetching
    /// an upgrade's binary with its kubelet identity).
    /// The client certificate of a kubeconfig (a node's kubelet
    /// kubeconfig), trusting the CA in `ca` only.
    pub fn with_kubeconfig_cert(ca: &std::path::Path, kubeconfig: &std::path::Path) -> anyhow::Result<HttpsClient> {
        use base64::Engine;
        let what = kubeconfig.display();
        let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let user = config.auth_infos.first().and_then(|a| a.auth_info.as_ref()).with_context(|| format!("{what} has no user"))?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim()).with_context(|| format!("bad base64 in {what}"));
        let read = |file: &str| std::fs::read(file).with_context(|| format!("cannot read {file}, named by {what}"));
        // Embedded, or in files (the kubelet's renewed pair, see node::client_cert).
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(data), _) => b64(data)?,
            (None, Some(file)) => read(file)?,
            (None, None) => anyhow::bail!("{what} has no client certificate"),
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(data), _) => b64(secrecy::ExposeSecret::expose_secret(data))?,
            (None, Some(file)) => read(file)?,
            (None, None) => anyhow::bail!("{what} has no client key"),
        };
        let ca = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        HttpsClient::with_client_cert(&ca, &cert, &key)
    }

    pub fn with_client_cert(ca: &[u8], cert: &[u8], key: &[u8]) -> anyhow::Result<HttpsClient> {
        let chain = rustls_pemfile::certs(&mut &cert[..]).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut &key[..])?.context("no private key")?;
        let config = rustls::ClientConfig::builder().with_root_certificates(roots(ca)?).with_client_auth_cert(chain, key)?;
        Ok(HttpsClient { config: Arc::new(config) })
    }

    /// GETs `path` into the file `dest`, streamed and binary-safe; an
    /// answer other than 200 (or 206) is an error carrying the server's
    /// message. A `dest` left by an interrupted download is resumed (a
    /// `Range` request; a server that answers 200 sends it all again), and
    /// a transfer shorter than its Content-Length is an error that leaves
    /// what arrived for the next try. Returns the size of `dest`.
    pub async fn download(&self, host: &str, port: u16, path: &str, dest: &std::path::Path) -> anyhow::Result<u64> {
        const HEAD_MAX: usize = 64 << 10;
        let have = tokio::fs::metadata(dest).await.map(|m| m.len()).unwrap_or(0);
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let name = ServerName::try_from(host.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp).await?;
        let range = if have > 0 { format!("Range: bytes={have}-\r\n") } else { String::new() };
        tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{range}\r\n").as_bytes()).await?;
        let mut head = Vec::new();
        let body_start = loop {
            let mut buf = [0u8; 8192];
            let n = tls.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "https://{host}:{port}{path}: the connection closed before the headers");
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            anyhow::ensure!(head.len() < HEAD_MAX, "https://{host}:{port}{path}: headers too long");
        };
        let headers = String::from_utf8_lossy(&head[..body_start]).to_string();
        let status: u16 = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("malformed HTTP response")?;
        if status != 200 && status != 206 {
            let mut message = head[body_start..].to_vec();
            let _ = (&mut tls).take(HEAD_MAX as u64).read_to_end(&mut message).await;
            anyhow::bail!("https://{host}:{port}{path}: HTTP {status}: {}", String::from_utf8_lossy(&message).trim());
        }
        let length: Option<u64> = headers
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().to_string()))
            .and_then(|v| v.parse().ok());
        let resumed = status == 206;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(dest)
            .await
            .with_context(|| format!("cannot write {}", dest.display()))?;
        file.write_all(&head[body_start..]).await?;
        let copied = tokio::io::copy(&mut tls, &mut file).await.or_else(|e| {
            // Servers may close without close_notify after an HTTP/1.0 answer.
            if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(0) } else { Err(e) }
        })?;
        file.sync_all().await?;
        let got = (head.len() - body_start) as u64 + copied;
        if let Some(want) = length.filter(|&want| got < want) {
            anyhow::bail!("https://{host}:{port}{path}: interrupted after {got} of {want} bytes; the next try resumes");
        }
        Ok(if resumed { have + got } else { got })
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
        let mut limited = (&mut tls).take(RESPONSE_MAX + 1);
        match tokio::time::timeout(RESPONSE_TIMEOUT, limited.read_to_end(&mut raw)).await {
            Err(_) => anyhow::bail!("https://{host}:{port}{path}: no complete answer within {RESPONSE_TIMEOUT:?}"),
            // Servers may close without close_notify after an HTTP/1.0 answer.
            Ok(Err(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(e.into()),
            Ok(_) => {}
        }
        anyhow::ensure!(raw.len() as u64 <= RESPONSE_MAX, "https://{host}:{port}{path}: the answer is larger than {} MiB", RESPONSE_MAX >> 20);
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

//! A kube-rs client whose TLS client certificate is read from its file for
//! every new connection, so a pair renewed under it (the kubelet's, see
//! `node::client_cert`) is used without a restart.
//!
//! Connections opened before a renewal keep the old certificate; the
//! kubelet renews at 70–90 % of a certificate's life, and connections are
//! not that old: idle ones close after 90 s, watches end within minutes.
//! The stack is kube-rs's default one (base URI, the kubeconfig's timeouts)
//! with rustls given a certificate resolver instead of a fixed pair.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::Client;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, SignatureScheme};
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// A client for `config`, whose client certificate and key are read from
/// `pair` (one PEM file, or the kubeconfig's `client-key` if it names another).
pub fn client(config: kube::Config, pair: &Path) -> anyhow::Result<Client> {
    let key = config.auth_info.client_key.clone().map_or_else(|| pair.to_path_buf(), PathBuf::from);
    let resolver = Arc::new(FileIdentity::new(pair.to_path_buf(), key));
    resolver.load().with_context(|| format!("cannot load the client certificate {}", pair.display()))?;
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = resolver;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new().layer(config.base_uri_layer()).service(http_client).map_err(BoxError::from);
    Ok(Client::new(service, config.default_namespace))
}

/// The certificate and key in their files, read again when the cert file
/// changed (a renewal links `kubelet-client-current.pem` to a new file).
#[derive(Debug)]
struct FileIdentity {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Option<(SystemTime, Arc<CertifiedKey>)>>,
}

impl FileIdentity {
    fn new(cert: PathBuf, key: PathBuf) -> FileIdentity {
        FileIdentity { cert, key, loaded: Mutex::new(None) }
    }

    /// The pair, from the cache while the cert file's modification time
    /// (through the link) is unchanged.
    fn load(&self) -> anyhow::Result<Arc<CertifiedKey>> {
        let modified = std::fs::metadata(&self.cert)?.modified()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, key)) = loaded.as_ref() {
            if *at == modified {
                return Ok(key.clone());
            }
        }
        let chain = rustls_pemfile::certs(&mut &std::fs::read(&self.cert)?[..]).collect::<Result<Vec<_>, _>>()?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", self.cert.display());
        let der = rustls_pemfile::private_key(&mut &std::fs::read(&self.key)?[..])?
            .with_context(|| format!("{} holds no private key", self.key.display()))?;
        let provider = rustls::crypto::CryptoProvider::get_default().cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let key = Arc::new(CertifiedKey::from_der(chain, der, &provider)?);
        *loaded = Some((modified, key.clone()));
        Ok(key)
    }
}

impl ResolvesClientCert for FileIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        match self.load() {
            Ok(key) => Some(key),
            Err(e) => {
                // The previous pair, if any, is better than none: the handshake may still pass.
                tracing::warn!(cert = %self.cert.display(), "cannot read the client certificate: {e:#}");
                self.loaded.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, key)| key.clone())
            }
        }
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cn: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap().self_signed(&key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_renewed_file_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let (first, second, current) = (tmp.path().join("a.pem"), tmp.path().join("b.pem"), tmp.path().join("current.pem"));
        std::fs::write(&first, pair("first")).unwrap();
        std::fs::write(&second, pair("second")).unwrap();
        // b.pem is written later: another modification time behind the link.
        filetime_later(&second);
        std::os::unix::fs::symlink(&first, &current).unwrap();
        let identity = FileIdentity::new(current.clone(), current.clone());
        let before = identity.load().unwrap();
        assert!(Arc::ptr_eq(&before, &identity.load().unwrap()), "an unchanged file is not read again");
        std::fs::remove_file(&current).unwrap();
        std::os::unix::fs::symlink(&second, &current).unwrap();
        let after = identity.load().unwrap();
        assert_ne!(before.cert, after.cert);
    }

    fn filetime_later(path: &Path) {
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
    }
}

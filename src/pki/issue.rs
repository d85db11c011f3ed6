//! Credentials issued on request, for nodes that join (they never touch
//! the CA key themselves): returned as PEM, not written here.

use super::cert::{self, LeafSpec, Lifetimes};
use super::{kubeconfig, Pki, PkiError};

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn issue(pki: &Pki, spec: &LeafSpec) -> Result<Issued, PkiError> {
    let ca = cert::load_ca(&pki.ca_cert(), &pki.ca_key())?;
    let key = cert::generate_key(&spec.describe())?;
    let cert_pem = cert::issue(&ca, spec, &key, &Lifetimes::DEFAULT)?;
    Ok(Issued { cert_pem, key_pem: key.serialize_pem() })
}

/// A client certificate, e.g. `system:node:<name>` in `system:nodes`.
pub fn issue_client(pki: &Pki, common_name: &str, organization: Option<&str>) -> Result<Issued, PkiError> {
    issue(pki, &LeafSpec::client(common_name, organization))
}

/// A serving certificate for names and IPs.
pub fn issue_serving(pki: &Pki, common_name: &str, sans: &[String]) -> Result<Issued, PkiError> {
    issue(pki, &LeafSpec::server(common_name, cert::parse_sans(sans, "sans")?))
}

/// A kubeconfig with everything embedded.
pub fn render_kubeconfig(ca_pem: &str, server: &str, user: &str, issued: &Issued) -> Result<String, PkiError> {
    kubeconfig::render(server, ca_pem, user, &issued.cert_pem, &issued.key_pem)
}

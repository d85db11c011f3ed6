//! Credentials issued on request, for nodes that join (they never touch
//! the CA key themselves): returned as PEM, not written here.

use std::net::IpAddr;
use std::path::Path;

use super::cert::{self, LeafSpec, Lifetimes};
use crate::host::net;
use super::{kubeconfig, Pki, PkiError};

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn issue(ca_cert: &Path, ca_key: &Path, spec: &LeafSpec) -> Result<Issued, PkiError> {
    let ca = cert::load_ca(ca_cert, ca_key)?;
    let key = cert::generate_key(&spec.describe())?;
    let cert_pem = cert::issue(&ca, spec, &key, &Lifetimes::from_env()?)?;
    Ok(Issued { cert_pem, key_pem: key.serialize_pem() })
}

/// A client certificate, e.g. `system:node:<name>` in `system:nodes`.
pub fn issue_client(pki: &Pki, common_name: &str, organization: Option<&str>) -> Result<Issued, PkiError> {
    issue(&pki.ca_cert(), &pki.ca_key(), &LeafSpec::client(common_name, organization))
}

/// A joining node's kubelet serving certificate: signed by the kubelet CA
/// (never the cluster CA), for the node's name and address only.
pub fn issue_kubelet_serving(pki: &Pki, node_name: &str, node_ip: IpAddr) -> Result<Issued, PkiError> {
    let name = node_dns_name(node_name)?;
    let sans = cert::parse_sans(&[name.to_string(), node_ip.to_string()], "sans")?;
    issue(&pki.kubelet_ca_cert(), &pki.kubelet_ca_key(), &LeafSpec::server(name, sans))
}

/// A node name as a certificate may carry it (see [`net::check_node_name`]).
pub fn node_dns_name(name: &str) -> Result<&str, PkiError> {
    net::check_node_name(name).map_err(|e| PkiError::params("node name", e))
}

/// A kubeconfig with everything embedded.
pub fn render_kubeconfig(ca_pem: &str, server: &str, user: &str, issued: &Issued) -> Result<String, PkiError> {
    kubeconfig::render(server, ca_pem, user, &issued.cert_pem, &issued.key_pem)
}

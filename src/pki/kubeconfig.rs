//! Kubeconfigs with everything embedded (CA, client cert and key), the way
//! k3s writes them: cluster "default", context "default", user = identity;
//! and the node's kubelet kubeconfig, whose cert and key stay in a file the
//! kubelet renews ([`render_with_files`]).

use std::path::{Path, PathBuf};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};

use super::cert::{self, Lifetimes};
use super::files::{create_dir, read_optional, write_if_changed, SECRET};
use super::{Identity, Pki, PkiError};

const NAME: &str = "default";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    clusters: Vec<NamedCluster>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
    users: Vec<NamedUser>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct User {
    #[serde(rename = "client-certificate-data", skip_serializing_if = "String::is_empty")]
    client_certificate_data: String,
    #[serde(rename = "client-key-data", skip_serializing_if = "String::is_empty")]
    client_key_data: String,
    #[serde(rename = "client-certificate", skip_serializing_if = "String::is_empty")]
    client_certificate: String,
    #[serde(rename = "client-key", skip_serializing_if = "String::is_empty")]
    client_key: String,
}

/// See [`super::ensure_kubeconfig`]; `lt` is injectable for tests.
pub fn ensure(
    pki: &Pki,
    identity: Identity,
    node_name: &str,
    server_url: &str,
    dir: &Path,
    lt: &Lifetimes,
) -> Result<PathBuf, PkiError> {
    if !server_url.starts_with("https://") {
        return Err(PkiError::params("server_url", format!("{server_url:?} must be an https:// URL")));
    }
    let spec = identity.spec(node_name)?;
    let ca = cert::load_ca(&pki.ca_cert(), &pki.ca_key())?;
    create_dir(dir, 0o755)?;
    let path = identity.kubeconfig_path(dir);
    // The kubeconfig is the only copy of its client cert: reuse it while it still fits.
    let existing = read_optional(&path)?.and_then(|text| client_credentials(&text, identity.name()));
    let reusable = existing.filter(|(cert_pem, key_pem)| {
        KeyPair::from_pem(key_pem).is_ok_and(|key| cert::stale_reason(&ca, &spec, cert_pem, &key, lt).is_none())
    });
    let (cert_pem, key_pem) = match reusable {
        Some(credentials) => credentials,
        None => {
            let key = cert::generate_key(&spec.describe())?;
            let cert_pem = cert::issue(&ca, &spec, &key, lt)?;
            tracing::info!(kubeconfig = %path.display(), "issued {}", spec.describe());
            (cert_pem, key.serialize_pem())
        }
    };
    let text = render(server_url, &ca.pem, identity.name(), &cert_pem, &key_pem)?;
    // Also covers a changed server URL or CA: the text differs, the file is rewritten.
    write_if_changed(&path, text.as_bytes(), SECRET)?;
    Ok(path)
}

pub(super) fn render(server: &str, ca_pem: &str, user_name: &str, cert_pem: &str, key_pem: &str) -> Result<String, PkiError> {
    let user = User {
        client_certificate_data: BASE64_STANDARD.encode(cert_pem),
        client_key_data: BASE64_STANDARD.encode(key_pem),
        ..Default::default()
    };
    to_yaml(server, ca_pem, user_name, user)
}

/// A kubeconfig with the CA embedded and the client cert and key read from
/// `pair` (one PEM file holding both, as the kubelet's certificate store
/// keeps them), so a renewed pair is used without rewriting it.
pub fn render_with_files(server: &str, ca_pem: &str, user_name: &str, pair: &Path) -> Result<String, PkiError> {
    let pair = pair.display().to_string();
    to_yaml(server, ca_pem, user_name, User { client_certificate: pair.clone(), client_key: pair, ..Default::default() })
}

fn to_yaml(server: &str, ca_pem: &str, user_name: &str, user: User) -> Result<String, PkiError> {
    let config = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Cluster { server: server.into(), certificate_authority_data: BASE64_STANDARD.encode(ca_pem) },
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Context { cluster: NAME.into(), user: user_name.into() },
        }],
        current_context: NAME.into(),
        users: vec![NamedUser { name: user_name.into(), user }],
    };
    serde_yaml::to_string(&config).map_err(|e| PkiError::params("kubeconfig", format!("cannot render: {e}")))
}

/// The PEM cert and key of `user` in a kubeconfig we wrote (`None` if anything is off).
fn client_credentials(text: &str, user: &str) -> Option<(String, String)> {
    let config: Kubeconfig = serde_yaml::from_str(text).ok()?;
    let user = config.users.into_iter().find(|u| u.name == user)?.user;
    let decode = |data: &str| String::from_utf8(BASE64_STANDARD.decode(data).ok()?).ok();
    Some((decode(&user.client_certificate_data)?, decode(&user.client_key_data)?))
}

/// What a kubeconfig we wrote says: the API server, the CA, and the first
/// user's embedded client cert and key (`None` if anything is off).
pub fn read_embedded(text: &str) -> Option<Embedded> {
    let config: Kubeconfig = serde_yaml::from_str(text).ok()?;
    let cluster = config.clusters.into_iter().next()?.cluster;
    let user = config.users.into_iter().next()?.user;
    let decode = |data: &str| String::from_utf8(BASE64_STANDARD.decode(data).ok()?).ok();
    Some(Embedded {
        server: cluster.server,
        ca_pem: decode(&cluster.certificate_authority_data)?,
        cert_pem: decode(&user.client_certificate_data)?,
        key_pem: decode(&user.client_key_data)?,
    })
}

/// See [`read_embedded`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embedded {
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The client cert PEM of the first user with one embedded (`None`: none,
/// or not a kubeconfig): what `k8s certs check` reads of any kubeconfig.
pub fn embedded_client_cert(text: &str) -> Option<String> {
    let config: Kubeconfig = serde_yaml::from_str(text).ok()?;
    let data = config.users.into_iter().map(|u| u.user.client_certificate_data).find(|d| !d.is_empty())?;
    String::from_utf8(BASE64_STANDARD.decode(data).ok()?).ok()
}

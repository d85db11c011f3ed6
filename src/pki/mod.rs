//! The cluster PKI under `<data-dir>/pki` (file names as kubeadm's):
//!
//! | files | what |
//! | --- | --- |
//! | `ca.crt`, `ca.key` | cluster CA: signs serving and client certs |
//! | `front-proxy-ca.crt`, `front-proxy-ca.key` | aggregation-layer CA |
//! | `front-proxy-client.crt`, `.key` | the apiserver's client cert towards aggregated APIs |
//! | `sa.key`, `sa.pub` | service-account token signing key pair |
//! | `apiserver.crt`, `.key` | apiserver serving cert (SANs from the params) |
//! | `apiserver-kubelet-client.crt`, `.key` | the apiserver's client cert towards kubelets |
//! | `kubelet-ca.crt`, `kubelet-ca.key` | kubelet serving CA: signs kubelet serving certs only; the API server checks kubelets against it and nothing else trusts it, so a serving cert a node obtains (with an agent token) is no key to the API or to joining servers |
//! | `kubelet.crt`, `.key` | kubelet serving cert (kubelet CA) |
//! | `metrics-server.crt`, `.key` | metrics-server's serving cert (cluster CA) for [`METRICS_SERVER_NAME`]: the built-in addon's Secret carries it, and the API server checks it against the cluster CA (the APIService's `caBundle`) |
//! | `etcd/ca.crt`, `etcd/ca.key` | HA only: etcd's own CA (a node's certs must not reach etcd) |
//! | `etcd/server.crt`, `.key`; `etcd/peer.crt`, `.key` | HA only: the etcd member's serving and peer certs |
//! | `apiserver-etcd-client.crt`, `.key` | HA only: the apiserver's (and k8s's) client cert towards etcd |
//! | `encryption-config.yaml` | the key Secrets are encrypted with at rest ([`encryption`]) |
//!
//! Kubeconfigs (`<name>.kubeconfig`) embed their own client certs.
//!
//! `ensure` is idempotent: unchanged inputs leave every byte alone, changed
//! SANs re-issue only the affected cert, leaves in their last 120 days are
//! renewed, and an existing CA or service-account key is always kept (a new
//! one would break every node, kubeconfig and token of the cluster).
//! Keys are 0600, certs 0644, every write is atomic (temp file, fsync, rename).
//!
//! Lifetimes (k3s's): CAs 10 years, leaves and the client certs of
//! kubeconfigs 1 year, renewed by `ensure`/`ensure_kubeconfig` (so at every
//! server start) once less than 120 days are left; a renewed leaf keeps its
//! key. Tests shorten leaves with `K8S_CERT_LEAF_DAYS` (whole days, 1 to
//! 365): leaves then live that many days and are renewed in their second
//! half, e.g. `K8S_CERT_LEAF_DAYS=10` issues 10-day leaves renewed once less
//! than 5 days are left. It reaches `ensure`, `ensure_kubeconfig` and the
//! credentials issued to joining nodes; CAs keep their 10 years. Any other
//! value is an error naming the variable. `k8s certs check|rotate`
//! (`crate::certs`) shows and forces renewals; see docs/certificates.md.

mod cert;
pub mod encryption;
pub mod expiry;
mod files;
mod issue;
mod kubeconfig;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use cert::LeafSpec;
pub use cert::{issuer_key_id, summarize, Lifetimes, Summary, LEAF_DAYS_ENV};
pub use issue::{issue_client, issue_kubelet_serving, node_dns_name, render_kubeconfig};
pub use kubeconfig::{embedded_client_cert, read_embedded, render_with_files, Embedded};

/// The name the API server checks metrics-server's serving cert for: the
/// aggregation layer dials an APIService's Service as `<name>.<namespace>.svc`.
pub const METRICS_SERVER_NAME: &str = "metrics-server.kube-system.svc";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {err}")]
    Io { path: PathBuf, action: &'static str, err: io::Error },
    #[error("{path} {problem}; {fix}")]
    Invalid { path: PathBuf, problem: String, fix: String },
    #[error("invalid PKI parameter {field}: {problem}")]
    Params { field: String, problem: String },
    #[error("cannot create {what}: {err}")]
    Generate { what: String, err: rcgen::Error },
}

impl PkiError {
    fn io(path: &Path, action: &'static str, err: io::Error) -> PkiError {
        PkiError::Io { path: path.to_path_buf(), action, err }
    }

    fn invalid(path: &Path, problem: String, fix: &str) -> PkiError {
        PkiError::Invalid { path: path.to_path_buf(), problem, fix: fix.to_string() }
    }

    fn params(field: &str, problem: String) -> PkiError {
        PkiError::Params { field: field.to_string(), problem }
    }

    fn generate(what: &str, err: rcgen::Error) -> PkiError {
        PkiError::Generate { what: what.to_string(), err }
    }
}

#[derive(Clone, Debug)]
pub struct PkiParams {
    /// `<data-dir>/pki`
    pub dir: PathBuf,
    /// The kubelet's identity (`system:node:<node_name>`) and serving cert CN.
    pub node_name: String,
    /// DNS names and/or IP literals for the apiserver serving cert.
    pub apiserver_sans: Vec<String>,
    /// DNS names and/or IP literals for the kubelet serving cert.
    pub kubelet_sans: Vec<String>,
    /// HA: names and IPs of this etcd member (its serving and peer certs).
    pub etcd_sans: Option<Vec<String>>,
}

/// Where the PKI's files are (they exist once `ensure` returned it).
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.file("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.file("ca.key")
    }
    pub fn front_proxy_ca_cert(&self) -> PathBuf {
        self.file("front-proxy-ca.crt")
    }
    pub fn front_proxy_ca_key(&self) -> PathBuf {
        self.file("front-proxy-ca.key")
    }
    pub fn front_proxy_client_cert(&self) -> PathBuf {
        self.file("front-proxy-client.crt")
    }
    pub fn front_proxy_client_key(&self) -> PathBuf {
        self.file("front-proxy-client.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.file("sa.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.file("sa.pub")
    }
    pub fn apiserver_cert(&self) -> PathBuf {
        self.file("apiserver.crt")
    }
    pub fn apiserver_key(&self) -> PathBuf {
        self.file("apiserver.key")
    }
    pub fn apiserver_kubelet_client_cert(&self) -> PathBuf {
        self.file("apiserver-kubelet-client.crt")
    }
    pub fn apiserver_kubelet_client_key(&self) -> PathBuf {
        self.file("apiserver-kubelet-client.key")
    }
    pub fn kubelet_ca_cert(&self) -> PathBuf {
        self.file("kubelet-ca.crt")
    }
    pub fn kubelet_ca_key(&self) -> PathBuf {
        self.file("kubelet-ca.key")
    }
    pub fn kubelet_cert(&self) -> PathBuf {
        self.file("kubelet.crt")
    }
    pub fn kubelet_key(&self) -> PathBuf {
        self.file("kubelet.key")
    }
    pub fn metrics_server_cert(&self) -> PathBuf {
        self.file("metrics-server.crt")
    }
    pub fn metrics_server_key(&self) -> PathBuf {
        self.file("metrics-server.key")
    }
    pub fn etcd_ca_cert(&self) -> PathBuf {
        self.file("etcd/ca.crt")
    }
    pub fn etcd_ca_key(&self) -> PathBuf {
        self.file("etcd/ca.key")
    }
    pub fn etcd_server_cert(&self) -> PathBuf {
        self.file("etcd/server.crt")
    }
    pub fn etcd_server_key(&self) -> PathBuf {
        self.file("etcd/server.key")
    }
    pub fn etcd_peer_cert(&self) -> PathBuf {
        self.file("etcd/peer.crt")
    }
    pub fn etcd_peer_key(&self) -> PathBuf {
        self.file("etcd/peer.key")
    }
    pub fn apiserver_etcd_client_cert(&self) -> PathBuf {
        self.file("apiserver-etcd-client.crt")
    }
    pub fn apiserver_etcd_client_key(&self) -> PathBuf {
        self.file("apiserver-etcd-client.key")
    }

    /// The files every server of a cluster shares (CAs and the
    /// service-account key): what a joining server receives.
    /// The files every server of a cluster holds alike, sent to joining
    /// servers. The encryption config only when the cluster has one (see
    /// [`encryption`]).
    pub fn shared_files(&self) -> Vec<PathBuf> {
        let mut files = vec![
            self.ca_cert(), self.ca_key(),
            self.kubelet_ca_cert(), self.kubelet_ca_key(),
            self.front_proxy_ca_cert(), self.front_proxy_ca_key(),
            self.sa_key(), self.sa_pub(),
            self.etcd_ca_cert(), self.etcd_ca_key(),
        ];
        if self.encryption_config().exists() {
            files.push(self.encryption_config());
        }
        files
    }
}

/// Creates what is missing under `params.dir` and renews what is stale; see the module docs.
pub fn ensure(params: &PkiParams) -> Result<Pki, PkiError> {
    ensure_with(params, &Lifetimes::from_env()?)
}

/// [`ensure`] with given lifetimes instead of the environment's (tests).
pub(crate) fn ensure_with(params: &PkiParams, lt: &Lifetimes) -> Result<Pki, PkiError> {
    // Validate everything before the first write.
    let apiserver_sans = cert::parse_sans(&params.apiserver_sans, "apiserver_sans")?;
    let kubelet_sans = cert::parse_sans(&params.kubelet_sans, "kubelet_sans")?;
    let node = valid_node_name(&params.node_name)?;
    let pki = Pki { dir: params.dir.clone() };
    files::create_dir(&pki.dir, 0o700)?;

    let ca = cert::ensure_ca(&pki.ca_cert(), &pki.ca_key(), "k8s-ca", lt)?;
    let kubelet_ca = cert::ensure_ca(&pki.kubelet_ca_cert(), &pki.kubelet_ca_key(), "k8s-kubelet-ca", lt)?;
    let front_proxy_ca =
        cert::ensure_ca(&pki.front_proxy_ca_cert(), &pki.front_proxy_ca_key(), "k8s-front-proxy-ca", lt)?;
    cert::ensure_key_pair(&pki.sa_key(), &pki.sa_pub())?;

    // Leaves as `<stem>.crt` + `<stem>.key`.
    let leaf = |issuer: &cert::Ca, stem: &str, spec: LeafSpec| {
        cert::ensure_leaf(issuer, &spec, &pki.file(&format!("{stem}.crt")), &pki.file(&format!("{stem}.key")), lt)
    };
    leaf(&ca, "apiserver", LeafSpec::server("kube-apiserver", apiserver_sans))?;
    leaf(&ca, "apiserver-kubelet-client", LeafSpec::client("kube-apiserver-kubelet-client", Some("system:masters")))?;
    leaf(&kubelet_ca, "kubelet", LeafSpec::server(node, kubelet_sans))?;
    leaf(&front_proxy_ca, "front-proxy-client", LeafSpec::client("front-proxy-client", None))?;
    // Issued whether or not the addon is disabled: a disabled addon's
    // manifest is still rendered, to know which objects to delete.
    let metrics_server = cert::parse_sans(&[METRICS_SERVER_NAME.into()], "metrics-server")?;
    leaf(&ca, "metrics-server", LeafSpec::server("metrics-server", metrics_server))?;
    if let Some(sans) = &params.etcd_sans {
        let sans = cert::parse_sans(sans, "etcd_sans")?;
        files::create_dir(&pki.dir.join("etcd"), 0o700)?;
        let etcd_ca = cert::ensure_ca(&pki.etcd_ca_cert(), &pki.etcd_ca_key(), "k8s-etcd-ca", lt)?;
        leaf(&etcd_ca, "etcd/server", LeafSpec::peer(node, sans.clone()))?;
        leaf(&etcd_ca, "etcd/peer", LeafSpec::peer(node, sans))?;
        leaf(&etcd_ca, "apiserver-etcd-client", LeafSpec::client("kube-apiserver-etcd-client", None))?;
    }
    Ok(pki)
}

fn valid_node_name(name: &str) -> Result<&str, PkiError> {
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(PkiError::params("node_name", format!("{name:?} is not a valid node name")));
    }
    Ok(name)
}

/// Identities that get a client cert embedded in a kubeconfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// CN=system:admin, O=system:masters: the operator's kubeconfig.
    Admin,
    /// CN=system:kube-controller-manager
    ControllerManager,
    /// CN=system:kube-scheduler
    Scheduler,
    /// CN=system:kube-proxy
    KubeProxy,
    /// CN=system:node:<node>, O=system:nodes (what the Node authorizer expects).
    Kubelet,
    /// CN=system:k8s-supervisor, O=system:masters: the k8s process's own client.
    Supervisor,
}

impl Identity {
    /// The kubeconfig's file stem and user name.
    pub fn name(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::ControllerManager => "controller-manager",
            Identity::Scheduler => "scheduler",
            Identity::KubeProxy => "kube-proxy",
            Identity::Kubelet => "kubelet",
            Identity::Supervisor => "supervisor",
        }
    }

    /// `<dir>/<name>.kubeconfig`
    pub fn kubeconfig_path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.kubeconfig", self.name()))
    }

    fn spec(self, node_name: &str) -> Result<LeafSpec, PkiError> {
        let (cn, org) = match self {
            Identity::Admin => ("system:admin".to_string(), Some("system:masters")),
            Identity::ControllerManager => ("system:kube-controller-manager".to_string(), None),
            Identity::Scheduler => ("system:kube-scheduler".to_string(), None),
            Identity::KubeProxy => ("system:kube-proxy".to_string(), None),
            Identity::Kubelet => (format!("system:node:{}", valid_node_name(node_name)?), Some("system:nodes")),
            Identity::Supervisor => ("system:k8s-supervisor".to_string(), Some("system:masters")),
        };
        Ok(LeafSpec::client(&cn, org))
    }
}

/// Writes `<dir>/<name>.kubeconfig` (0600) for `identity`, pointing at
/// `server_url`, with the cluster CA and the client cert/key embedded; returns
/// its path. The embedded cert is re-issued only when missing, no longer
/// matching (other CA, node name) or expiring (the leaves' renewal window,
/// see the module doc); a changed `server_url` or CA
/// rewrites the file. `node_name` is used by [`Identity::Kubelet`] only.
pub fn ensure_kubeconfig(
    pki: &Pki,
    identity: Identity,
    node_name: &str,
    server_url: &str,
    dir: &Path,
) -> Result<PathBuf, PkiError> {
    kubeconfig::ensure(pki, identity, node_name, server_url, dir, &Lifetimes::from_env()?)
}

//! Where a server or agent keeps its files.
//!
//! `<data-dir>` (default /var/lib/k8s): `bin/<hash>/` components, `pki/`,
//! `kubeconfigs/`, `server/db/` (the datastore), `server/manifests/`
//! (auto-deployed manifests and the built-in addons; what they applied in
//! `server/manifests-applied.json`), `server/{token,agent-token}` (the default join tokens),
//! `agent/` (containerd, kubelet and CNI state; an agent's credentials in
//! `agent/pki/`), `images/` (image archives to import), `logs/`. `/run/k8s`: sockets and the status file, gone
//! at reboot.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::paths::RUN_DIR;

#[derive(Clone, Debug)]
pub struct Layout {
    data_dir: PathBuf,
    run_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { data_dir: data_dir.into(), run_dir: RUN_DIR.into() }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone()
    }
    pub fn pki_dir(&self) -> PathBuf {
        self.data_dir.join("pki")
    }
    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.data_dir.join("kubeconfigs")
    }
    pub fn datastore_dir(&self) -> PathBuf {
        self.data_dir.join("server/db")
    }
    /// Auto-deployed manifests, the built-in addons among them.
    pub fn manifests_dir(&self) -> PathBuf {
        self.data_dir.join("server/manifests")
    }
    /// The objects this server applied from the manifests dir, per file
    /// (outside the dir, which applies every `.json` in it).
    pub fn manifests_record(&self) -> PathBuf {
        self.data_dir.join("server/manifests-applied.json")
    }
    /// The default token that joins servers (HA).
    pub fn server_token(&self) -> PathBuf {
        self.data_dir.join("server/token")
    }
    /// The default token that joins agents.
    pub fn agent_token(&self) -> PathBuf {
        self.data_dir.join("server/agent-token")
    }
    /// local-path volumes, unless `default-local-storage-path` says otherwise.
    pub fn storage_dir(&self) -> PathBuf {
        self.data_dir.join("storage")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    /// The API server's audit policy (written at every start).
    pub fn audit_policy(&self) -> PathBuf {
        self.data_dir.join("server/audit-policy.yaml")
    }
    /// The API server's admission settings (PodSecurity).
    pub fn admission_config(&self) -> PathBuf {
        self.data_dir.join("server/admission.yaml")
    }
    pub fn datastore_socket(&self) -> PathBuf {
        self.run_dir.join("datastore.sock")
    }
    /// Left by `k8s restore` for the server's first start after it.
    pub fn restored_marker(&self) -> PathBuf {
        self.data_dir.join("server/restored")
    }

    pub fn status_file(&self) -> PathBuf {
        self.run_dir.join("status.json")
    }
    /// What an agent received when it joined (CA, credentials, settings).
    pub fn agent_pki_dir(&self) -> PathBuf {
        self.data_dir.join("agent/pki")
    }
    /// The cluster CA an agent got at its join.
    pub fn agent_ca(&self) -> PathBuf {
        self.agent_pki_dir().join("ca.crt")
    }
    /// The agent's kubelet kubeconfig (its `system:node:<name>` client cert).
    pub fn agent_kubelet_kubeconfig(&self) -> PathBuf {
        self.agent_pki_dir().join("kubelet.kubeconfig")
    }
    /// The join endpoint the agent joined through (`k8s reset` tells it the
    /// node is leaving).
    pub fn agent_join_server(&self) -> PathBuf {
        self.data_dir.join("agent/join-server")
    }
    /// The agent's API load balancer's last list of servers.
    pub fn api_servers_file(&self) -> PathBuf {
        self.data_dir.join("agent/api-servers.json")
    }
    pub fn node(&self) -> NodePaths {
        NodePaths::new(self)
    }

    /// Fails with the reason when the data dir cannot be created or written.
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        // Keys, tokens and the datastore live here: root only.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("cannot make the data dir {} private (mode 0700)", dir.display()))?;
        tempfile::tempfile_in(dir).with_context(|| {
            format!("cannot write in the data dir {} (read-only filesystem or permissions?); pick another with --data-dir", dir.display())
        })?;
        Ok(())
    }

    /// One server or agent per data dir: holds an exclusive lock while it runs.
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.data_dir.join("server.lock");
        let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!("another k8s server (pid {}) is using {}; stop it first", holder.trim(), self.data_dir.display());
        }
        f.set_len(0)?;
        write!(f, "{}", std::process::id())?;
        Ok(f)
    }
}

/// Where the node part (containerd, kubelet, CNI) keeps its files.
#[derive(Clone, Debug)]
pub struct NodePaths {
    pub etc: PathBuf,
    pub containerd_root: PathBuf,
    pub containerd_state: PathBuf,
    pub containerd_socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub ipam_dir: PathBuf,
    pub logs: PathBuf,
    /// The kubelet's certificate store (`--cert-dir`): its client cert and
    /// key as `kubelet-client-current.pem`, a link to the newest pair.
    pub kubelet_client_dir: PathBuf,
    /// The kubeconfig of the kubelet and of `k8s`'s own node-side clients:
    /// the cluster CA, and the store's current pair by path.
    pub kubelet_kubeconfig: PathBuf,
    /// Image archives a user drops for containerd (air-gapped hosts).
    pub images_dir: PathBuf,
    /// Which of those were imported, as which file size and mtime.
    pub images_imported: PathBuf,
    /// containerd's hosts dir (`config_path`): one `<registry>/hosts.toml`
    /// per registry of `/etc/k8s/registries.yaml`.
    pub registry_hosts: PathBuf,
}

impl NodePaths {
    /// The store's link to its newest pair (the kubelet's name for it).
    pub fn kubelet_client_current(&self) -> PathBuf {
        self.kubelet_client_dir.join("kubelet-client-current.pem")
    }

    fn new(layout: &Layout) -> NodePaths {
        let agent = layout.data_dir.join("agent");
        NodePaths {
            etc: agent.join("etc"),
            containerd_root: agent.join("containerd"),
            containerd_state: layout.run_dir.join("containerd"),
            containerd_socket: layout.run_dir.join("containerd/containerd.sock"),
            cni_conf_dir: agent.join("etc/cni/net.d"),
            ipam_dir: agent.join("cni-ipam"),
            logs: layout.logs_dir(),
            kubelet_client_dir: agent.join("kubelet-client"),
            kubelet_kubeconfig: agent.join("etc/kubelet.kubeconfig"),
            images_dir: layout.data_dir.join("images"),
            images_imported: agent.join("etc/images-imported"),
            registry_hosts: agent.join("etc/certs.d"),
        }
    }
}

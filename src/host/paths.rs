//! Where `k8s` lives on a host, as users and `k8s up` expect it. Paths
//! under the data dir are [`super::Layout`]'s: the data dir can move.

/// The installed binary (`k8s up` uploads it here; the units run it).
pub const BINARY: &str = "/usr/local/bin/k8s";
/// The config directory (root only).
pub const CONFIG_DIR: &str = "/etc/k8s";
/// `k8s server` / `k8s agent` settings: keys are flag names.
pub const CONFIG: &str = "/etc/k8s/config.yaml";
/// Private registries and mirrors, k3s's `registries.yaml` format
/// (read by `node::registries`; optional).
pub const REGISTRIES: &str = "/etc/k8s/registries.yaml";
/// The join token a joining server or agent presents (written by `k8s up`).
pub const TOKEN: &str = "/etc/k8s/token";
/// The admin kubeconfig a server writes unless `write-kubeconfig` says
/// elsewhere (mode 0600 unless `write-kubeconfig-mode`).
pub const ADMIN_KUBECONFIG: &str = "/etc/k8s/admin.kubeconfig";
/// The default data dir.
pub const DATA_DIR: &str = "/var/lib/k8s";
/// Sockets and the status file: gone at reboot.
pub const RUN_DIR: &str = "/run/k8s";
/// kubelet's own state (pod volumes are mounted under it).
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
/// Where systemd units are installed.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The systemd units that run `k8s server` and `k8s agent`.
pub const SERVER_UNIT: &str = "k8s-server";
pub const AGENT_UNIT: &str = "k8s-agent";
/// Whether systemd runs this host (the directory exists once it booted).
pub const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// The unit file of `unit` (`k8s-server`, `k8s-agent`).
pub fn unit_file(unit: &str) -> String {
    format!("{UNIT_DIR}/{unit}.service")
}

//! The carried command-line tools, like k3s's: `k8s kubectl …` (with the
//! admin kubeconfig) and `k8s ctr …` (with this node's containerd socket and
//! the namespace kubelet's containers live in).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::host::paths::{ADMIN_KUBECONFIG, DATA_DIR};
use crate::host::Layout;
use crate::payload::Components;

/// Replaces this process with kubectl; returns only on failure.
pub fn kubectl(args: Vec<OsString>) -> anyhow::Result<()> {
    let (_, components) = locate()?;
    let mut cmd = std::process::Command::new(components.bin("kubectl"));
    cmd.args(&args);
    let explicit = args.iter().any(|a| a.to_string_lossy().starts_with("--kubeconfig"));
    if std::env::var_os("KUBECONFIG").is_none() && !explicit && Path::new(ADMIN_KUBECONFIG).exists() {
        cmd.env("KUBECONFIG", ADMIN_KUBECONFIG);
    }
    exec(cmd)
}

/// Replaces this process with ctr; returns only on failure. The socket and
/// namespace go in ctr's own environment variables, so its flags still win.
pub fn ctr(args: Vec<OsString>) -> anyhow::Result<()> {
    let (data_dir, components) = locate()?;
    let mut cmd = std::process::Command::new(components.bin("ctr"));
    cmd.args(&args);
    if std::env::var_os("CONTAINERD_ADDRESS").is_none() {
        cmd.env("CONTAINERD_ADDRESS", Layout::new(&data_dir).node().containerd_socket);
    }
    if std::env::var_os("CONTAINERD_NAMESPACE").is_none() {
        cmd.env("CONTAINERD_NAMESPACE", "k8s.io");
    }
    exec(cmd)
}

/// The data dir (`K8S_DATA_DIR`, else the default) and the components in it
/// (`K8S_COMPONENTS_DIR` for a build without a payload).
fn locate() -> anyhow::Result<(PathBuf, Components)> {
    let data_dir = std::env::var_os("K8S_DATA_DIR").map_or_else(|| PathBuf::from(DATA_DIR), PathBuf::from);
    let override_dir = std::env::var_os("K8S_COMPONENTS_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
    let components = Components::locate(&data_dir, override_dir.as_deref())?;
    Ok((data_dir, components))
}

fn exec(mut cmd: std::process::Command) -> anyhow::Result<()> {
    let err = cmd.exec();
    anyhow::bail!("cannot run {}: {err}", cmd.get_program().to_string_lossy())
}

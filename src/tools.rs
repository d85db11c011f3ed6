//! The carried command-line tools, like k3s's: `k8s kubectl …` (with the
//! admin kubeconfig), `k8s crictl …` (the CRI client, with this node's
//! containerd socket) and `k8s ctr …` (the socket and the namespace
//! kubelet's containers live in).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::host::config::Local;
use crate::host::Layout;
use crate::payload::Components;

/// Replaces this process with kubectl; returns only on failure.
pub fn kubectl(args: Vec<OsString>) -> anyhow::Result<()> {
    let (local, components) = locate()?;
    let mut cmd = std::process::Command::new(components.bin("kubectl"));
    cmd.args(&args);
    let explicit = args.iter().any(|a| a.to_string_lossy().starts_with("--kubeconfig"));
    if std::env::var_os("KUBECONFIG").is_none() && !explicit && local.admin_kubeconfig.exists() {
        cmd.env("KUBECONFIG", &local.admin_kubeconfig);
    }
    exec(cmd)
}

/// Replaces this process with ctr; returns only on failure. The socket and
/// namespace go in ctr's own environment variables, so its flags still win.
pub fn ctr(args: Vec<OsString>) -> anyhow::Result<()> {
    let (local, components) = locate()?;
    let mut cmd = std::process::Command::new(components.bin("ctr"));
    cmd.args(&args);
    if std::env::var_os("CONTAINERD_ADDRESS").is_none() {
        cmd.env("CONTAINERD_ADDRESS", Layout::new(&local.data_dir).node().containerd_socket);
    }
    if std::env::var_os("CONTAINERD_NAMESPACE").is_none() {
        cmd.env("CONTAINERD_NAMESPACE", "k8s.io");
    }
    exec(cmd)
}

/// Replaces this process with crictl; returns only on failure. The socket
/// goes in crictl's own environment variable, so its flags (and a user's
/// CONTAINER_RUNTIME_ENDPOINT) still win.
pub fn crictl(args: Vec<OsString>) -> anyhow::Result<()> {
    let (local, components) = locate()?;
    let mut cmd = std::process::Command::new(components.bin("crictl"));
    cmd.args(&args);
    if std::env::var_os("CONTAINER_RUNTIME_ENDPOINT").is_none() {
        let socket = Layout::new(&local.data_dir).node().containerd_socket;
        cmd.env("CONTAINER_RUNTIME_ENDPOINT", format!("unix://{}", socket.display()));
    }
    exec(cmd)
}

/// The data dir and admin kubeconfig (`K8S_DATA_DIR` stands for the flag
/// these commands cannot take: their arguments are the tool's), and the
/// components in the data dir (`K8S_COMPONENTS_DIR` for a build without a payload).
fn locate() -> anyhow::Result<(Local, Components)> {
    let env = |name| std::env::var_os(name).filter(|d| !d.is_empty()).map(PathBuf::from);
    let local = Local::resolve(env("K8S_DATA_DIR"))?;
    let components = Components::locate(&local.data_dir, env("K8S_COMPONENTS_DIR").as_deref())?;
    Ok((local, components))
}

fn exec(mut cmd: std::process::Command) -> anyhow::Result<()> {
    let err = cmd.exec();
    anyhow::bail!("cannot run {}: {err}", cmd.get_program().to_string_lossy())
}

//! `k8s kubectl …`: the carried kubectl, like `k3s kubectl`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::host::paths::{ADMIN_KUBECONFIG, DATA_DIR};
use crate::payload::Components;

/// Replaces this process with kubectl; returns only on failure.
pub fn exec(args: Vec<OsString>) -> anyhow::Result<()> {
    let data_dir = std::env::var_os("K8S_DATA_DIR").map_or_else(|| PathBuf::from(DATA_DIR), PathBuf::from);
    let override_dir = std::env::var_os("K8S_COMPONENTS_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
    let components = Components::locate(&data_dir, override_dir.as_deref())?;
    let mut cmd = std::process::Command::new(components.bin("kubectl"));
    cmd.args(&args);
    let explicit = args.iter().any(|a| a.to_string_lossy().starts_with("--kubeconfig"));
    if std::env::var_os("KUBECONFIG").is_none() && !explicit && Path::new(ADMIN_KUBECONFIG).exists() {
        cmd.env("KUBECONFIG", ADMIN_KUBECONFIG);
    }
    let err = cmd.exec();
    anyhow::bail!("cannot run {}: {err}", components.bin("kubectl").display())
}

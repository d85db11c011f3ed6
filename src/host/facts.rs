//! Facts about the host that decide how components run.

use std::path::Path;

use super::paths::SYSTEMD_RUN_DIR;

/// The cgroup version of the host: kubelet ≥ 1.35 refuses v1 unless told
/// otherwise, and many edge hosts still run v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    V2,
}

pub fn cgroups() -> Cgroups {
    // On a unified (v2) host the root holds cgroup.controllers.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { Cgroups::V2 } else { Cgroups::V1 }
}

/// Whether systemd is PID 1 (it then owns cgroups; kubelet and runc should
/// use the systemd driver there only when cgroups are v2 and delegated).
pub fn systemd_is_init() -> bool {
    Path::new(SYSTEMD_RUN_DIR).exists()
}

/// Whether this process may raise resource limits and lower OOM scores
/// (CAP_SYS_RESOURCE in its bounding set); containers and some VMs drop it.
pub fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map_or(true, |caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

//! `k8s reset`: stops the server (or agent) and removes what it created:
//! its etcd membership (HA), an agent's node name (released by the server
//! it joined through), processes (including containers), mounts, the
//! pod network's interfaces and iptables rules, the units, the data dir and
//! /etc/k8s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::paths::{self, CONFIG_DIR, KUBELET_DIR, RUN_DIR};
use crate::host::Layout;
use crate::server::status;

const UNITS: [&str; 2] = [paths::SERVER_UNIT, paths::AGENT_UNIT];

pub fn run(data_dir: &Path, yes: bool) -> anyhow::Result<()> {
    let backups = crate::backup::list(&crate::backup::default_dir(data_dir)).map(|l| l.len()).unwrap_or(0);
    let backups = match backups {
        0 => String::new(),
        n => format!(" and the {n} backups in {} (copy them off first)", crate::backup::default_dir(data_dir).display()),
    };
    let question = format!(
        "This stops k8s and deletes its data ({}, /etc/k8s){backups}: every cluster object on this host is lost. Continue?",
        data_dir.display()
    );
    if !yes && !crate::prompt::confirm(&question, std::io::stdout())? {
        println!("nothing changed");
        return Ok(());
    }
    leave_etcd(data_dir);
    leave_cluster(data_dir);
    stop_service(data_dir);
    kill_pods_and_shims(data_dir);
    unmount_under(&[data_dir, Path::new(KUBELET_DIR), Path::new(RUN_DIR)]);
    remove_network();
    for path in [data_dir, Path::new(KUBELET_DIR), Path::new(RUN_DIR), Path::new(CONFIG_DIR)] {
        remove(path);
    }
    for unit in UNITS {
        remove(Path::new(&paths::unit_file(unit)));
    }
    if Path::new(paths::SYSTEMD_RUN_DIR).exists() {
        let _ = Command::new("systemctl").arg("daemon-reload").status();
    }
    println!("k8s reset: done");
    Ok(())
}

/// An HA server leaves the etcd membership while its member still runs, so
/// the others do not count a member that will never come back.
fn leave_etcd(data_dir: &Path) {
    if !crate::etcd::has_data(data_dir) {
        return;
    }
    let pki = crate::pki::Pki { dir: Layout::new(data_dir).pki_dir() };
    let leave = async { tokio::time::timeout(Duration::from_secs(40), crate::etcd::membership::leave(&pki, Duration::from_secs(30))).await };
    let outcome = tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(leave));
    match outcome {
        Ok(Ok(Ok(()))) => println!("left the etcd cluster"),
        Ok(Ok(Err(e))) => eprintln!("could not leave the etcd cluster ({e:#}); on another server run `k8s etcd remove-member <this node's name>`"),
        _ => eprintln!("could not leave the etcd cluster in time; on another server run `k8s etcd remove-member <this node's name>`"),
    }
}

/// An agent tells the server it joined through that it leaves, which
/// releases its node name (see [`crate::join::binding`]) so the host can
/// join again as new.
fn leave_cluster(data_dir: &Path) {
    let layout = Layout::new(data_dir);
    let Ok(server) = std::fs::read_to_string(layout.agent_join_server()) else { return };
    let leave = async {
        let (host, port) = crate::join::client::parse_url(server.trim())?;
        // The kubelet's current pair (renewed) if the node got that far, else the issued one.
        let renewed = layout.node().kubelet_kubeconfig;
        let kubeconfig = if renewed.exists() { renewed } else { layout.agent_kubelet_kubeconfig() };
        let client = crate::https::HttpsClient::with_kubeconfig_cert(&layout.agent_ca(), &kubeconfig)?;
        let (status, body) = client.request(&host, port, "POST", "/v1/node/leave", None).await?;
        anyhow::ensure!(status == 200, "HTTP {status}: {}", body.trim());
        anyhow::Ok(())
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), leave).await.map_err(anyhow::Error::from)? }));
    match outcome {
        Ok(()) => println!("left the cluster: this node's name is free again"),
        Err(e) => eprintln!(
            "could not tell {} that this node leaves ({e:#}); its name stays bound until its Node is deleted (kubectl delete node NAME)",
            server.trim()
        ),
    }
}

fn stop_service(data_dir: &Path) {
    for unit in UNITS {
        if Path::new(&paths::unit_file(unit)).exists() {
            let _ = Command::new("systemctl").args(["disable", "--now", unit]).status();
        }
    }
    let Some(s) = status::read(&Layout::new(data_dir)) else { return };
    println!("stopping k8s server (pid {})", s.pid);
    signal(s.pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(s.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(s.pid, libc::SIGKILL);
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal has no memory effects here.
    unsafe { libc::kill(pid as i32, sig) };
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Container shims outlive k8s by design (pods survive restarts); reset
/// kills them (found by our containerd's socket on their command line,
/// wherever their binary lives), and every process in this host's pod
/// cgroups.
fn kill_pods_and_shims(data_dir: &Path) {
    let bin = data_dir.join("bin");
    let socket = format!("{RUN_DIR}/containerd/containerd.sock");
    let own_mounts = std::fs::read_link("/proc/self/ns/mnt").ok();
    for pid in pids() {
        // Paths name our files only in our mount namespace (pods, which
        // have their own, are found by cgroup below).
        let same_mounts = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == own_mounts;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = same_mounts && (exe.starts_with(&bin) || String::from_utf8_lossy(&cmdline).contains(&socket));
        if ours || in_kubepods(pid) {
            signal(pid, libc::SIGKILL);
        }
    }
    // Empty pod cgroups can now go (children first).
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let pods = hierarchy.path().join("kubepods");
        let mut dirs = Vec::new();
        collect_dirs(&pods, &mut dirs);
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != std::process::id())
        .collect()
}

/// Whether a process sits in this host's pod cgroups: its path starts at
/// `/kubepods` (another node on the machine, seen from here, is elsewhere).
fn in_kubepods(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.splitn(3, ':').nth(2).is_some_and(|p| p.starts_with("/kubepods"))))
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.into());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Unmounts every mount strictly below the given dirs, deepest first. The
/// dirs themselves stay mounted (a separate volume for /var/lib/k8s is the
/// operator's); their content is removed afterwards.
fn unmount_under(roots: &[&Path]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|t| PathBuf::from(t.replace("\\040", " ")))
        .filter(|t| {
            roots.iter().any(|r| t.starts_with(r) && t != r) || t.to_string_lossy().starts_with("/run/netns/cni-")
        })
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    for t in targets {
        let c = std::ffi::CString::new(t.as_os_str().as_encoded_bytes()).expect("no NUL in paths");
        // SAFETY: umount2 on a path string we own.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The bridge, the VXLAN device and the pods' network namespaces go; so do
/// the iptables rules kube-proxy and the CNI plugins added (KUBE-*, CNI-* chains).
fn remove_network() {
    for link in ["cni0", crate::node::vxlan::DEVICE] {
        let _ = Command::new("ip").args(["link", "delete", link]).stderr(std::process::Stdio::null()).status();
    }
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("cni-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (save, restore) in [("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")] {
        let Ok(out) = Command::new(save).output() else { continue };
        let kept: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("KUBE-") && !l.contains("CNI-"))
            .map(|l| format!("{l}\n"))
            .collect();
        let child = Command::new(restore).stdin(std::process::Stdio::piped()).spawn();
        if let Ok(mut child) = child {
            let _ = child.stdin.take().map(|mut s| s.write_all(kept.as_bytes()));
            let _ = child.wait();
        }
    }
}

fn remove(path: &Path) {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match result {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // A mount point (a separate disk for /var/lib/k8s, say) stays; its content goes.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                remove(&entry.path());
            }
        }
        Err(e) => eprintln!("cannot remove {}: {e}", path.display()),
    }
}

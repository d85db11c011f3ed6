//! Whether a host can run k8s: what `k8s check-config` prints and what
//! `k8s up` checks on every host before it changes anything. One shell
//! script ([`SCRIPT`]) observes (kernel config, cgroups, tools, ports,
//! clock, memory, disk; it changes nothing), the same script on this
//! machine and over SSH; [`judge`] turns what it printed into findings,
//! each saying what to do.

use std::collections::BTreeMap;

use serde::Serialize;

/// Prints `check.<key>=<value>` lines and exits 0. Run as root (the kernel
/// config and the listening sockets are readable by anyone, but not everywhere).
pub const SCRIPT: &str = r#"
set +e
echo "check.kernel=$(uname -r)"
echo "check.arch=$(uname -m)"
for f in /proc/config.gz "/boot/config-$(uname -r)" "/lib/modules/$(uname -r)/build/.config"; do
  [ -r "$f" ] || continue
  echo "check.kconfig=$f"
  case $f in *.gz) zcat "$f" ;; *) cat "$f" ;; esac 2>/dev/null |
    grep -E '^CONFIG_(OVERLAY_FS|BRIDGE|BRIDGE_NETFILTER|VETH|VXLAN|NF_CONNTRACK|NF_NAT|NETFILTER_XT_MATCH_COMMENT|SECCOMP)=' |
    sed 's/^/check./'
  break
done
[ -d "/lib/modules/$(uname -r)" ] && echo "check.modules_dir=yes"
for m in overlay bridge br_netfilter veth vxlan nf_conntrack nf_nat xt_comment; do
  [ -d "/sys/module/$m" ] && echo "check.loaded.$m=yes"
done
grep -qw overlay /proc/filesystems 2>/dev/null && echo "check.loaded.overlay=yes"
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo "check.loaded.br_netfilter=yes"
echo "check.cgroupfs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
[ -r /sys/fs/cgroup/cgroup.controllers ] && echo "check.cgroup2=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "check.cgroup1=$(awk 'NR > 1 && $4 == 1 { printf "%s ", $1 }' /proc/cgroups 2>/dev/null)"
for t in iptables iptables-save iptables-restore ip mount umount; do
  command -v "$t" >/dev/null 2>&1 && echo "check.tool.$t=yes"
done
printf 'check.listening='
for p in $(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u); do
  printf '%d ' "0x$p"
done
echo
{ [ -d /var/lib/k8s/server ] || [ -d /var/lib/k8s/agent ]; } && echo "check.k8s_installed=yes"
command -v timedatectl >/dev/null 2>&1 && echo "check.ntp=$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"
echo "check.mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
d=/var/lib/k8s; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "check.free_kib=$(df -Pk "$d" | awk 'NR == 2 { print $4 }')"
echo "check.glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
"#;

/// What the script printed, by key (without `check.`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observations(BTreeMap<String, String>);

impl Observations {
    /// The `check.` lines of `out` (other lines are ignored: `k8s up` runs
    /// this script in one round trip with its own).
    pub fn parse(out: &str) -> Observations {
        let lines = out.lines().filter_map(|l| l.strip_prefix("check.")?.split_once('='));
        Observations(lines.map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// What the host is to run.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    pub server: bool,
    /// An HA server: etcd's ports too.
    pub etcd: bool,
    pub vxlan: bool,
    /// The k8s binary is linked statically (`make dist`), so the host's
    /// glibc does not matter; a plain `cargo build` needs a recent one.
    pub static_binary: bool,
}

impl Want {
    /// Whether this very binary is static.
    pub const STATIC: bool = cfg!(target_feature = "crt-static");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    /// What was found, and for a problem what to do.
    pub detail: String,
}

impl Finding {
    fn new(check: impl Into<String>, level: Level, detail: impl Into<String>) -> Finding {
        Finding { check: check.into(), level, detail: detail.into() }
    }
}

/// The minimum glibc of the `k8s` binary (it is linked against 2.34's symbols).
const GLIBC: (u32, u32) = (2, 34);
/// Free space under `/var/lib/k8s` below which a host fails, and below which it warns (KiB).
pub const MIN_FREE_KIB: u64 = 1 << 20;
const LOW_FREE_KIB: u64 = 4 << 20;

/// The findings for `obs` (none when the script did not run at all).
pub fn judge(obs: &Observations, want: Want) -> Vec<Finding> {
    if !obs.has("arch") {
        return Vec::new();
    }
    let mut out = vec![arch(obs), glibc(obs, want.static_binary)];
    out.extend(kernel_features(obs, want));
    out.extend(cgroups(obs));
    out.extend(tools(obs));
    if !obs.has("k8s_installed") {
        out.extend(ports(obs, want));
    }
    out.push(clock(obs));
    out.push(memory(obs));
    if !obs.has("k8s_installed") {
        out.push(disk(obs));
    }
    out
}

fn arch(obs: &Observations) -> Finding {
    match obs.get("arch") {
        Some(m @ ("x86_64" | "aarch64")) => Finding::new("architecture", Level::Ok, m),
        other => Finding::new("architecture", Level::Fail, format!(
            "{}: k8s is built for x86_64 (amd64) and aarch64 (arm64) only",
            other.unwrap_or("unknown")
        )),
    }
}

fn glibc(obs: &Observations, static_binary: bool) -> Finding {
    let found = obs.get("glibc").and_then(|v| v.strip_prefix("glibc ")).map(str::trim);
    if static_binary {
        let has = found.map_or_else(|| "no glibc".to_string(), |v| format!("glibc {v}"));
        return Finding::new("glibc", Level::Ok, format!("not needed: k8s is linked statically ({has} here)"));
    }
    let version = found.and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.split('.').next()?.parse::<u32>().ok()?))
    });
    let need = format!("the k8s binary needs glibc {}.{} or newer (Debian 12, Ubuntu 22.04, RHEL 9 or newer)", GLIBC.0, GLIBC.1);
    match (found, version) {
        (Some(v), Some(have)) if have >= GLIBC => Finding::new("glibc", Level::Ok, v.to_string()),
        (Some(v), _) => Finding::new("glibc", Level::Fail, format!("{v}: {need}")),
        (None, _) => Finding::new("glibc", Level::Fail, format!("none found (musl?): {need}")),
    }
}

/// A kernel feature: its config keys (any of them), the module names that
/// show it loaded or built in, and how bad its absence is.
struct Feature {
    name: &'static str,
    why: &'static str,
    configs: &'static [&'static str],
    modules: &'static [&'static str],
    missing: Level,
}

fn kernel_features(obs: &Observations, want: Want) -> Vec<Finding> {
    let vxlan_level = if want.vxlan { Level::Fail } else { Level::Warn };
    let features = [
        Feature { name: "overlay", why: "containerd's image snapshots", configs: &["OVERLAY_FS"], modules: &["overlay"], missing: Level::Fail },
        Feature { name: "bridge", why: "the pod network's bridge", configs: &["BRIDGE"], modules: &["bridge"], missing: Level::Fail },
        Feature { name: "br_netfilter", why: "Services reached from pods on the same bridge", configs: &["BRIDGE_NETFILTER"], modules: &["br_netfilter"], missing: Level::Fail },
        Feature { name: "veth", why: "pods' network interfaces", configs: &["VETH"], modules: &["veth"], missing: Level::Fail },
        Feature { name: "vxlan", why: "pod-network: vxlan", configs: &["VXLAN"], modules: &["vxlan"], missing: vxlan_level },
        Feature { name: "conntrack and NAT", why: "kube-proxy's Services", configs: &["NF_CONNTRACK", "NF_NAT"], modules: &["nf_conntrack", "nf_nat"], missing: Level::Fail },
        Feature { name: "iptables comment match", why: "kube-proxy's rules", configs: &["NETFILTER_XT_MATCH_COMMENT"], modules: &["xt_comment"], missing: Level::Fail },
        Feature { name: "seccomp", why: "containers' seccomp profiles", configs: &["SECCOMP"], modules: &[], missing: Level::Warn },
    ];
    features.iter().map(|f| kernel_feature(obs, f)).collect()
}

fn kernel_feature(obs: &Observations, f: &Feature) -> Finding {
    let check = format!("kernel: {}", f.name);
    let loaded = f.modules.iter().any(|m| obs.has(&format!("loaded.{m}")));
    let values: Vec<(&str, Option<&str>)> = f.configs.iter().map(|c| (*c, obs.get(&format!("CONFIG_{c}")))).collect();
    let config_text = || values.iter().map(|(c, v)| format!("CONFIG_{c}={}", v.unwrap_or("unset"))).collect::<Vec<_>>().join(", ");
    if !obs.has("kconfig") {
        return match loaded {
            true => Finding::new(check, Level::Ok, "present (no kernel config file to read)"),
            false => Finding::new(check, Level::Warn, format!(
                "cannot tell: no kernel config (/proc/config.gz, /boot/config-{}) and no sign of it loaded; {} need it",
                obs.get("kernel").unwrap_or("?"), f.why
            )),
        };
    }
    let all_set = values.iter().all(|(_, v)| matches!(v, Some("y" | "m")));
    let modular = values.iter().any(|(_, v)| *v == Some("m"));
    if all_set && (!modular || loaded || obs.has("modules_dir")) {
        return Finding::new(check, Level::Ok, config_text());
    }
    if all_set {
        return Finding::new(check, f.missing, format!(
            "{}: built as a module, but /lib/modules/{} is missing; install this kernel's modules ({} need it)",
            config_text(), obs.get("kernel").unwrap_or("?"), f.why
        ));
    }
    if loaded {
        return Finding::new(check, Level::Ok, format!("present ({} in {})", config_text(), obs.get("kconfig").unwrap_or("?")));
    }
    Finding::new(check, f.missing, format!("not in this kernel ({}); {} need it: use a kernel that has it", config_text(), f.why))
}

fn cgroups(obs: &Observations) -> Vec<Finding> {
    let v2 = obs.get("cgroupfs") == Some("cgroup2fs");
    let (version, enabled, needed): (&str, &str, &[&str]) = if v2 {
        ("v2", obs.get("cgroup2").unwrap_or(""), &["cpu", "memory", "pids"])
    } else {
        ("v1", obs.get("cgroup1").unwrap_or(""), &["cpu", "cpuacct", "memory", "pids", "devices", "freezer"])
    };
    let have: Vec<&str> = enabled.split_whitespace().collect();
    let missing: Vec<&str> = needed.iter().copied().filter(|c| !have.contains(c)).collect();
    let mut out = vec![if missing.is_empty() {
        Finding::new("cgroups", Level::Ok, format!("{version}: {}", needed.join(", ")))
    } else {
        Finding::new("cgroups", Level::Fail, format!(
            "{version}: controller(s) {} not enabled; enable them on the kernel command line (cgroup_enable=memory, \
             or systemd.unified_cgroup_hierarchy=1 for v2) and reboot",
            missing.join(", ")
        ))
    }];
    if !v2 {
        out.push(Finding::new("cgroup version", Level::Warn,
            "v1: deprecated upstream; the kubelet runs with failCgroupV1: false (boot with systemd.unified_cgroup_hierarchy=1 for v2)"));
    }
    out
}

fn tools(obs: &Observations) -> Vec<Finding> {
    let needed = [("iptables", "iptables"), ("iptables-save", "iptables"), ("iptables-restore", "iptables"), ("ip", "iproute2"), ("mount", "mount"), ("umount", "mount")];
    let missing: Vec<(&str, &str)> = needed.iter().copied().filter(|(t, _)| !obs.has(&format!("tool.{t}"))).collect();
    if missing.is_empty() {
        return vec![Finding::new("host tools", Level::Ok, needed.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "))];
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    vec![Finding::new("host tools", Level::Fail, format!(
        "{} not found; install them (Debian/Ubuntu: apt-get install {})",
        missing.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        packages.join(" ")
    ))]
}

fn ports(obs: &Observations, want: Want) -> Vec<Finding> {
    let mut wanted: Vec<(u16, &str)> = vec![(10250, "kubelet"), (10256, "kube-proxy's health check")];
    if want.server {
        wanted.extend([(6443, "kube-apiserver"), (9345, "the join endpoint"), (10257, "kube-controller-manager"), (10259, "kube-scheduler")]);
    }
    if want.etcd {
        wanted.extend([(2379, "etcd's clients"), (2380, "etcd's peers")]);
    }
    let listening: Vec<u16> = obs.get("listening").unwrap_or("").split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let taken: Vec<String> = wanted.iter().filter(|(p, _)| listening.contains(p)).map(|(p, what)| format!("{p} ({what})")).collect();
    let ports = wanted.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ");
    vec![if taken.is_empty() {
        Finding::new("ports", Level::Ok, format!("free: {ports}"))
    } else {
        Finding::new("ports", Level::Fail, format!(
            "in use by another program: {}; stop it (another Kubernetes: k3s, kubeadm's kubelet?) before installing k8s",
            taken.join(", ")
        ))
    }]
}

fn clock(obs: &Observations) -> Finding {
    match obs.get("ntp") {
        Some("yes") => Finding::new("clock", Level::Ok, "synchronized (NTP)"),
        Some(_) => Finding::new("clock", Level::Warn,
            "not synchronized: certificates and etcd need the nodes' clocks to agree; enable systemd-timesyncd or chrony"),
        None => Finding::new("clock", Level::Warn, "cannot tell whether it is synchronized (no timedatectl)"),
    }
}

fn memory(obs: &Observations) -> Finding {
    let kib = obs.get("mem_kib").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mib = kib / 1024;
    if mib >= 1024 {
        Finding::new("memory", Level::Ok, format!("{mib} MiB"))
    } else {
        Finding::new("memory", Level::Warn, format!("{mib} MiB: a server with a small workload uses about 550 MiB; 1 GiB or more is advised"))
    }
}

fn disk(obs: &Observations) -> Finding {
    let Some(kib) = obs.get("free_kib").and_then(|v| v.parse::<u64>().ok()) else {
        return Finding::new("disk", Level::Warn, "cannot tell the free space under /var/lib/k8s");
    };
    let mib = kib / 1024;
    match kib {
        k if k < MIN_FREE_KIB => Finding::new("disk", Level::Fail, format!(
            "{mib} MiB free under /var/lib/k8s; k8s needs {} MiB for its components, images and state: free some",
            MIN_FREE_KIB / 1024
        )),
        k if k < LOW_FREE_KIB => Finding::new("disk", Level::Warn, format!("{mib} MiB free under /var/lib/k8s: little room for images and logs")),
        _ => Finding::new("disk", Level::Ok, format!("{mib} MiB free under /var/lib/k8s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: &str = "check.kernel=6.1.0\ncheck.arch=x86_64\ncheck.kconfig=/proc/config.gz\n\
        check.CONFIG_OVERLAY_FS=y\ncheck.CONFIG_BRIDGE=y\ncheck.CONFIG_BRIDGE_NETFILTER=m\ncheck.CONFIG_VETH=y\n\
        check.CONFIG_VXLAN=m\ncheck.CONFIG_NF_CONNTRACK=y\ncheck.CONFIG_NF_NAT=y\ncheck.CONFIG_NETFILTER_XT_MATCH_COMMENT=y\n\
        check.CONFIG_SECCOMP=y\ncheck.modules_dir=yes\ncheck.cgroupfs=cgroup2fs\ncheck.cgroup2=cpuset cpu io memory pids\n\
        check.cgroup1=\ncheck.tool.iptables=yes\ncheck.tool.iptables-save=yes\ncheck.tool.iptables-restore=yes\n\
        check.tool.ip=yes\ncheck.tool.mount=yes\ncheck.tool.umount=yes\ncheck.listening=22 53 \ncheck.ntp=yes\n\
        check.mem_kib=4000000\ncheck.free_kib=20000000\ncheck.glibc=glibc 2.36\nhostname=other-script\n";

    const SERVER: Want = Want { server: true, etcd: false, vxlan: false, static_binary: false };

    fn problems(text: &str, want: Want) -> Vec<String> {
        judge(&Observations::parse(text), want)
            .into_iter()
            .filter(|f| f.level != Level::Ok)
            .map(|f| format!("{} {}: {}", f.level.as_str(), f.check, f.detail))
            .collect()
    }

    #[test]
    fn a_healthy_host_passes_every_check() {
        assert_eq!(problems(HEALTHY, Want { server: true, etcd: true, vxlan: true, static_binary: false }), Vec::<String>::new());
    }

    #[test]
    fn nothing_observed_means_nothing_judged() {
        assert!(judge(&Observations::parse("hostname=x\n"), SERVER).is_empty());
    }

    #[test]
    fn a_missing_kernel_feature_fails_with_its_purpose() {
        let text = HEALTHY.replace("check.CONFIG_BRIDGE_NETFILTER=m\n", "");
        assert_eq!(problems(&text, SERVER), [
            "FAIL kernel: br_netfilter: not in this kernel (CONFIG_BRIDGE_NETFILTER=unset); \
             Services reached from pods on the same bridge need it: use a kernel that has it"
        ]);
        // Without the config file, a module seen loaded is enough, and nothing seen is a warning.
        let text = HEALTHY.replace("check.kconfig=/proc/config.gz\n", "").replace("check.CONFIG_", "check.x_");
        let found = problems(&format!("{text}check.loaded.overlay=yes\ncheck.loaded.bridge=yes\n"), SERVER);
        assert!(found.iter().all(|p| p.starts_with("warn kernel:")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("warn kernel: veth: cannot tell")), "{found:?}");
        assert!(!found.iter().any(|p| p.contains("overlay") || p.contains("kernel: bridge")), "{found:?}");
    }

    #[test]
    fn a_module_without_modules_is_a_failure_and_vxlan_matters_only_for_vxlan() {
        let text = HEALTHY.replace("check.modules_dir=yes\n", "");
        let found = problems(&text, SERVER);
        assert!(found[0].starts_with("FAIL kernel: br_netfilter: CONFIG_BRIDGE_NETFILTER=m: built as a module, but /lib/modules/6.1.0 is missing"), "{found:?}");
        assert!(found[1].starts_with("warn kernel: vxlan"), "{found:?}");
        let vxlan = problems(&text, Want { vxlan: true, ..SERVER });
        assert!(vxlan[1].starts_with("FAIL kernel: vxlan"), "{vxlan:?}");
    }

    #[test]
    fn old_glibc_other_arch_missing_tools_and_taken_ports_are_named() {
        let text = HEALTHY
            .replace("glibc 2.36", "glibc 2.31")
            .replace("arch=x86_64", "arch=aarch64")
            .replace("check.tool.iptables-save=yes\n", "")
            .replace("check.tool.ip=yes\n", "")
            .replace("listening=22 53 ", "listening=22 6443 2379 ");
        assert_eq!(problems(&text.replace("arch=aarch64", "arch=armv7l"), SERVER), [
            "FAIL architecture: armv7l: k8s is built for x86_64 (amd64) and aarch64 (arm64) only",
            "FAIL glibc: 2.31: the k8s binary needs glibc 2.34 or newer (Debian 12, Ubuntu 22.04, RHEL 9 or newer)",
            "FAIL host tools: iptables-save, ip not found; install them (Debian/Ubuntu: apt-get install iptables iproute2)",
            "FAIL ports: in use by another program: 6443 (kube-apiserver); stop it (another Kubernetes: k3s, kubeadm's kubelet?) before installing k8s",
        ]);
        // A static k8s needs no glibc at all; arm64 is built for.
        let static_k8s = judge(&Observations::parse(&text.replace("check.glibc=glibc 2.31\n", "check.glibc=\n")), Want { static_binary: true, ..SERVER });
        let line = |check: &str| static_k8s.iter().find(|f| f.check == check).map(|f| (f.level, f.detail.clone()));
        assert_eq!(line("glibc"), Some((Level::Ok, "not needed: k8s is linked statically (no glibc here)".to_string())));
        assert_eq!(line("architecture"), Some((Level::Ok, "aarch64".to_string())));
        // An agent does not need the servers' ports; etcd's count for HA servers only.
        assert!(problems(&text, Want { server: false, ..SERVER }).iter().all(|p| !p.contains("ports")));
        assert!(problems(&text, Want { etcd: true, ..SERVER }).iter().any(|p| p.contains("2379 (etcd's clients)")));
        // A host with k8s installed is not judged on the ports and disk it uses itself.
        assert!(problems(&format!("{text}check.k8s_installed=yes\n"), SERVER).iter().all(|p| !p.contains("ports")));
    }

    #[test]
    fn cgroups_clock_memory_and_disk() {
        let text = HEALTHY
            .replace("cgroupfs=cgroup2fs", "cgroupfs=tmpfs")
            .replace("check.cgroup1=", "check.cgroup1=cpuset cpu cpuacct blkio devices freezer pids")
            .replace("ntp=yes", "ntp=no")
            .replace("mem_kib=4000000", "mem_kib=700000")
            .replace("free_kib=20000000", "free_kib=500000");
        let found = problems(&text, SERVER);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with("FAIL cgroups: v1: controller(s) memory not enabled"), "{found:?}");
        assert!(found[1].starts_with("warn cgroup version: v1: deprecated upstream"), "{found:?}");
        assert!(found[2].starts_with("warn clock: not synchronized"), "{found:?}");
        assert!(found[3].starts_with("warn memory: 683 MiB"), "{found:?}");
        assert!(found[4].starts_with("FAIL disk: 488 MiB free under /var/lib/k8s"), "{found:?}");
    }
}

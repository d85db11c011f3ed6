//! What a host is and what of ours is on it, gathered with one shell
//! script (one round trip) plus a few small file reads.

use std::collections::BTreeMap;

use crate::host::check;
use crate::host::paths;
use crate::ssh;

/// The script prints `key=value` lines; it changes nothing. Run as root
/// (through [`script`]).
pub const SCRIPT: &str = r#"
set +e
echo "hostname=$(cat /proc/sys/kernel/hostname)"
if [ -r /etc/os-release ]; then . /etc/os-release; echo "os=${PRETTY_NAME:-$ID}"; fi
echo "arch=$(uname -m)"
[ -d /run/systemd/system ] && echo "systemd=yes"
echo "cgroup=$(stat -fc %T /sys/fs/cgroup 2>/dev/null)"
if [ -x /usr/local/bin/k8s ]; then
  echo "k8s_version=$(/usr/local/bin/k8s version 2>/dev/null | head -n 1)"
  echo "k8s_sha256=$(sha256 /usr/local/bin/k8s | cut -d ' ' -f 1)"
  echo "k8s_mtime=$(stat -c %Y /usr/local/bin/k8s)"
fi
for f in /etc/k8s/config.yaml /etc/k8s/token; do
  [ -e "$f" ] && echo "mtime:$f=$(stat -c %Y "$f")"
done
f=/etc/k8s/registries.yaml
[ -f "$f" ] && echo "registries=$(stat -c %a "$f") $(sha256 "$f" | cut -d ' ' -f 1)"
for u in k8s-server k8s-agent; do
  f=/etc/systemd/system/$u.service
  [ -e "$f" ] || continue
  echo "unit:$u=$(stat -c %Y "$f")"
  echo "active:$u=$(systemctl is-active $u 2>/dev/null)"
  echo "enabled:$u=$(systemctl is-enabled $u 2>/dev/null)"
  t=$(systemctl show -p ExecMainStartTimestamp --value $u 2>/dev/null)
  [ -n "$t" ] && echo "started:$u=$(date -d "$t" +%s 2>/dev/null)"
done
[ -d /var/lib/k8s/server/db ] && echo "datastore=sqlite"
[ -d /var/lib/k8s/etcd/member ] && echo "datastore=etcd"
d=/usr/local/bin; [ -d $d ] || d=/usr/local
echo "free_bin=$(df -Pk $d | awk 'NR==2 {print $4}')"
d=/var/lib/k8s; [ -d $d ] || d=/var/lib
echo "free_var=$(df -Pk $d | awk 'NR==2 {print $4}')"
"#;

/// [`SCRIPT`] (with the `sha256` function it calls) and the host check's,
/// in one round trip.
pub fn script() -> String {
    format!("{}{SCRIPT}{}", ssh::SHA256_FN, check::SCRIPT)
}

/// Free space `up` wants: the binary, a temporary copy beside it, and the
/// components it unpacks (about 260 MiB) with room for images and state.
pub const MIN_FREE_VAR_KIB: u64 = 1024 * 1024;

/// One host's facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Lower-cased: the default node name.
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub systemd: bool,
    /// 1 or 2.
    pub cgroup: u8,
    /// First line of `k8s version` of the installed binary (`k8s 0.1.0`).
    pub installed_version: Option<String>,
    pub installed_sha256: Option<String>,
    /// Installed units (`k8s-server`, `k8s-agent`) and their state.
    pub units: BTreeMap<String, UnitState>,
    /// Modification times (seconds) of the binary, config and token file.
    pub mtimes: BTreeMap<String, i64>,
    /// `sqlite` or `etcd` when the host holds a server's datastore.
    pub datastore: Option<String>,
    pub free_bin_kib: Option<u64>,
    pub free_var_kib: Option<u64>,
    /// The installed `/etc/k8s/config.yaml`, unit text and token.
    pub config: Option<String>,
    pub unit_text: BTreeMap<String, String>,
    pub token: Option<String>,
    /// `/etc/k8s/registries.yaml`, if it is there: its mode and sha256.
    pub registries: Option<FileState>,
    /// What the host check's script saw (see [`check::judge`]).
    pub checks: check::Observations,
}

/// A file on the host, as far as `up` compares it with its own copy.
#[derive(Debug, Clone, PartialEq)]
pub struct FileState {
    pub mode: u32,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitState {
    /// `systemctl is-active`: active, activating, failed, inactive, …
    pub active: String,
    /// `systemctl is-enabled`: enabled, disabled, …
    pub enabled: String,
    /// When its main process started (seconds), if running.
    pub started: Option<i64>,
    pub mtime: i64,
}

impl UnitState {
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }
}

impl Facts {
    /// Parses the script's output.
    pub fn parse(out: &str) -> Facts {
        let mut f = Facts { checks: check::Observations::parse(out), ..Facts::default() };
        for line in out.lines() {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim();
            let unit = |f: &mut Facts, name: &str| f.units.entry(name.to_string()).or_default().clone();
            match key.split_once(':') {
                Some(("mtime", path)) => {
                    if let Ok(t) = value.parse() {
                        f.mtimes.insert(path.to_string(), t);
                    }
                }
                Some((kind @ ("unit" | "active" | "enabled" | "started"), name)) => {
                    let mut u = unit(&mut f, name);
                    match kind {
                        "unit" => u.mtime = value.parse().unwrap_or(0),
                        "active" => u.active = value.to_string(),
                        "enabled" => u.enabled = value.to_string(),
                        _ => u.started = value.parse().ok(),
                    }
                    f.units.insert(name.to_string(), u);
                }
                _ => match key {
                    "hostname" => f.hostname = value.to_lowercase(),
                    "os" => f.os = value.trim_matches('"').to_string(),
                    "arch" => f.arch = value.to_string(),
                    "systemd" => f.systemd = value == "yes",
                    "cgroup" => f.cgroup = if value == "cgroup2fs" { 2 } else { 1 },
                    "k8s_version" if !value.is_empty() => f.installed_version = Some(value.to_string()),
                    "k8s_sha256" if !value.is_empty() => f.installed_sha256 = Some(value.to_string()),
                    "k8s_mtime" => {
                        if let Ok(t) = value.parse() {
                            f.mtimes.insert(crate::up::render::BINARY.to_string(), t);
                        }
                    }
                    "datastore" => f.datastore = Some(value.to_string()),
                    "registries" => {
                        f.registries = value.split_once(' ').map(|(mode, sum)| FileState {
                            mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                            sha256: sum.trim().to_string(),
                        })
                    }
                    "free_bin" => f.free_bin_kib = value.parse().ok(),
                    "free_var" => f.free_var_kib = value.parse().ok(),
                    _ => {}
                },
            }
        }
        f
    }

    /// Whether k8s is installed as a server or agent (a unit is there).
    pub fn installed_role(&self) -> Option<&str> {
        [paths::SERVER_UNIT, paths::AGENT_UNIT].into_iter().find(|u| self.units.contains_key(*u))
    }

    /// The version in `installed_version` (`k8s 0.1.0` → `0.1.0`).
    pub fn installed_release(&self) -> Option<&str> {
        self.installed_version.as_deref().map(|v| v.strip_prefix("k8s ").unwrap_or(v))
    }

    /// Whether the running service started before one of its files was
    /// last changed (an earlier `up` replaced them and then failed before
    /// restarting it), so it runs with outdated settings or binary.
    pub fn stale(&self, unit: &str, files: &[&str]) -> bool {
        let Some(started) = self.units.get(unit).and_then(|u| u.started) else { return false };
        let unit_mtime = self.units.get(unit).map_or(0, |u| u.mtime);
        files.iter().filter_map(|f| self.mtimes.get(*f).copied()).chain([unit_mtime]).any(|t| t > started)
    }
}

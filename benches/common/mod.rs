//! What `benches/datastore.rs` and `benches/api.rs` share: the three stores
//! (ours, etcd, kine) started fresh on loopback, and the child processes
//! that die with the benchmark.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

/// The stores, in the order the tables show them.
pub const N: usize = 3;
pub const OURS: usize = 0;
pub const ETCD: usize = 1;
pub const KINE: usize = 2;
pub const NAMES: [&str; N] = ["ours", "etcd", "kine"];
/// Each workload runs against etcd, then kine, then ours: all three go
/// through the same history.
pub const RUN_ORDER: [usize; N] = [ETCD, KINE, OURS];

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub spawned: Instant,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawns a child that dies with this thread (so a killed benchmark leaves
    /// nothing behind). Call it from the main thread only (the future given to
    /// `block_on` runs there, tasks do not): the death signal follows the
    /// thread that forked.
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let spawned = Instant::now();
        let child = cmd.spawn().with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { name: name.to_string(), child, log: log.to_path_buf(), spawned })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); the end of its log ({}):\n{}", self.name, self.log.display(), self.log_tail());
        }
        Ok(())
    }

    /// A field of /proc/PID/status in bytes (VmRSS, VmHWM: peak RSS).
    pub fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else { return 0.0 };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        (ticks(11) + ticks(12)) as f64 / hz
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// User + system CPU seconds of this process (the load generator).
pub fn self_cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The stores' binaries.
pub struct Binaries<'a> {
    pub k8s: &'a Path,
    pub etcd: &'a Path,
    pub kine: Option<&'a Path>,
}

/// Starts store `idx` fresh in `dir` (its log there, its data in
/// `dir/data`), named `name`; returns it, its client URL and data dir.
pub fn start_store(bins: &Binaries, idx: usize, name: &str, dir: &Path) -> Result<(Proc, String, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let data_dir = dir.join("data");
    match idx {
        OURS => {
            if !bins.k8s.exists() {
                bail!("{} does not exist: run `cargo build --release` or set K8S_BIN", bins.k8s.display());
            }
            let endpoint = format!("http://127.0.0.1:{}", free_port()?);
            let mut cmd = Command::new(bins.k8s);
            cmd.arg("datastore").arg("--data-dir").arg(&data_dir).arg("--listen").arg(&endpoint);
            if std::env::var_os("K8S_LOG").is_none() {
                cmd.env("K8S_LOG", "warn");
            }
            Ok((Proc::start(name, cmd, &dir.join("datastore.log"))?, endpoint, data_dir))
        }
        ETCD => {
            let (client, peer) = (free_port()?, free_port()?);
            let endpoint = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(bins.etcd);
            cmd.arg("--name").arg("bench")
                .arg("--data-dir").arg(&data_dir)
                .arg("--listen-client-urls").arg(&endpoint)
                .arg("--advertise-client-urls").arg(&endpoint)
                .arg("--listen-peer-urls").arg(&peer_url)
                .arg("--initial-advertise-peer-urls").arg(&peer_url)
                .arg("--initial-cluster").arg(format!("bench={peer_url}"))
                .arg("--quota-backend-bytes").arg("8589934592")
                .arg("--logger").arg("zap")
                .arg("--log-outputs").arg("stderr")
                .arg("--log-level").arg("warn");
            Ok((Proc::start(name, cmd, &dir.join("etcd.log"))?, endpoint, data_dir))
        }
        _ => {
            let kine = bins.kine.ok_or_else(|| anyhow!("no kine binary (KINE_BIN)"))?;
            if !kine.exists() {
                bail!("{} does not exist: run benches/kine/build.sh or set KINE_BIN", kine.display());
            }
            // kine with its defaults: no --endpoint means SQLite at
            // ./db/state.db (WAL, synchronous=NORMAL, so commits are not
            // fsynced), so it runs in its data dir; "0": no metrics listener
            // (its default is :8080 on every interface).
            std::fs::create_dir_all(&data_dir)?;
            let addr = format!("127.0.0.1:{}", free_port()?);
            let mut cmd = Command::new(kine);
            cmd.current_dir(&data_dir).arg("--listen-address").arg(&addr).arg("--metrics-bind-address").arg("0");
            Ok((Proc::start(name, cmd, &dir.join("kine.log"))?, format!("http://{addr}"), data_dir))
        }
    }
}

//! `cargo bench --bench api` (`make bench-api`): the same kube-apiserver (the
//! one the payload carries) on `k8s datastore`, on etcd and on kine, under
//! one load generator (kube-rs, typed k8s-openapi objects): creates, updates
//! with conflicts, paginated lists and watches of ConfigMaps and Pods across
//! namespaces, each at a fixed rate and at saturation. The datastores alone,
//! without the API server, are `make bench` (benches/datastore.rs). See
//! benches/README.md.
//!
//! Each store starts fresh in a temporary directory under `BENCH_DIR` on
//! loopback, with its own kube-apiserver on 127.0.0.1 (a throwaway PKI, the
//! flags `k8s server` gives it where they matter); then each workload runs
//! against the three in turn before the next one, so they go through the
//! same history under conditions as close as a shared machine allows. The
//! list workload also starts a second kube-apiserver with
//! `--watch-cache=false` on the store whose turn it is, whose lists all go to
//! the store. Everything is stopped at the end (kill on drop,
//! PR_SET_PDEATHSIG in case this process is killed).
//!
//! Environment:
//! - `BENCH_DIR`    temporary directories and the extracted kube-apiserver
//!   (default /var/tmp)
//! - `BENCH_SCALE`  multiplies operation counts and time caps (default 1; 0.1
//!   for a quick run)
//! - `K8S_BIN`      the `k8s` binary (default target/release/k8s)
//! - `ETCD_BIN`     the etcd binary (default `etcd` from PATH)
//! - `KINE_BIN`     the kine binary (default: what benches/kine/build.sh prints)
//! - `K8S_PAYLOAD_DIR` the directory holding `payload.tar.zst` (default: what
//!   `bootstrap/build.sh` prints on its last line)
//! - `BENCH_STORES` comma-separated stores to run, in order (default
//!   `etcd,kine,ours`)
//! - `BENCH_ONLY`   comma-separated workload numbers (1 create, 2 update,
//!   3 list, 4 watch); each sets up what it needs
//! - `BENCH_KEEP`   set: keep the temporary directory (logs, audit logs, data)
//! - `K8S_LOG`      passed to `k8s datastore` (default warn)

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use common::{free_port, self_cpu_seconds, Binaries, Proc, ETCD, KINE, N, NAMES, OURS, RUN_ORDER};
use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// Configuration

struct Config {
    bench_dir: PathBuf,
    scale: f64,
    k8s_bin: PathBuf,
    etcd_bin: PathBuf,
    kine_bin: Option<PathBuf>,
    payload_dir: PathBuf,
    /// Stores to run, in this order.
    stores: Vec<usize>,
    only: Option<Vec<u32>>,
}

impl Config {
    fn from_env() -> Result<Config> {
        let scale = match std::env::var("BENCH_SCALE") {
            Ok(s) => s.parse::<f64>().with_context(|| format!("BENCH_SCALE={s} is not a number"))?,
            Err(_) => 1.0,
        };
        if !(scale > 0.0 && scale <= 100.0) {
            bail!("BENCH_SCALE must be in (0, 100], got {scale}");
        }
        let stores = match std::env::var("BENCH_STORES") {
            Ok(s) => s
                .split(',')
                .map(|n| NAMES.iter().position(|x| *x == n.trim()).ok_or_else(|| anyhow!("BENCH_STORES: unknown store {n:?} (ours, etcd, kine)")))
                .collect::<Result<Vec<_>>>()?,
            Err(_) => RUN_ORDER.to_vec(),
        };
        let only = std::env::var("BENCH_ONLY").ok().map(|s| {
            s.split(',').filter_map(|p| p.trim().parse::<u32>().ok()).collect::<Vec<_>>()
        });
        let kine_bin = match std::env::var_os("KINE_BIN") {
            Some(p) => Some(PathBuf::from(p)),
            None if stores.contains(&KINE) => Some(last_line_of("benches/kine/build.sh", "set KINE_BIN to a kine binary")?),
            None => None,
        };
        let payload_dir = match std::env::var_os("K8S_PAYLOAD_DIR") {
            Some(p) => PathBuf::from(p),
            None => last_line_of("bootstrap/build.sh", "set K8S_PAYLOAD_DIR to the directory holding payload.tar.zst")?,
        };
        Ok(Config {
            bench_dir: std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/tmp".into()),
            scale,
            k8s_bin: std::env::var_os("K8S_BIN").map(PathBuf::from).unwrap_or_else(|| {
                option_env!("CARGO_BIN_EXE_k8s")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/k8s"))
            }),
            etcd_bin: std::env::var_os("ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| "etcd".into()),
            kine_bin,
            payload_dir,
            stores,
            only,
        })
    }

    /// An operation count scaled by BENCH_SCALE, at least `min`.
    fn n(&self, base: u64, min: u64) -> u64 {
        ((base as f64 * self.scale).round() as u64).max(min)
    }

    /// A time cap scaled by BENCH_SCALE, at least 3 s.
    fn cap(&self, base_secs: f64) -> Duration {
        Duration::from_secs_f64((base_secs * self.scale).max(3.0))
    }

    fn wants(&self, w: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&w))
    }
}

/// Runs one of the repository's build scripts (which cache what they build:
/// a second run only prints the path) and returns its last line of stdout.
fn last_line_of(script: &str, instead: &str) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}); {instead}", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    if path.is_empty() {
        bail!("{} printed no path; {instead}", script.display());
    }
    Ok(PathBuf::from(path))
}

// ---------------------------------------------------------------------------
// Processes

/// Peak RSS and CPU seconds, read before the process is stopped.
fn usage(p: &Proc) -> Usage {
    Usage { hwm: p.status_bytes("VmHWM"), cpu: p.cpu_seconds() }
}

#[derive(Default, Clone, Copy)]
struct Usage {
    hwm: u64,
    cpu: f64,
}


/// CPU seconds the whole machine has been busy (all cores, /proc/stat).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// Allocated bytes of everything under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.path().symlink_metadata() {
            Ok(md) if md.is_dir() => disk_usage(&e.path()),
            Ok(md) => md.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The stores

/// Starts store `idx` fresh in `dir`; returns it, its client URL and data dir.
fn start_store(cfg: &Config, idx: usize, dir: &Path) -> Result<(Proc, String, PathBuf)> {
    let bins = Binaries { k8s: &cfg.k8s_bin, etcd: &cfg.etcd_bin, kine: cfg.kine_bin.as_deref() };
    let name = if idx == OURS { "k8s datastore" } else { NAMES[idx] };
    common::start_store(&bins, idx, name, dir)
}

/// Waits for the store's first answer (an etcd Range) and returns the time
/// from spawn.
async fn wait_store(store: &mut Proc, endpoint: &str) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        store.check_alive()?;
        let attempt = async {
            let opts = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
            let mut c = etcd_client::Client::connect([endpoint], Some(opts)).await?;
            c.get("/bench/ready", None).await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(store.spawned.elapsed()),
            _ if Instant::now() > deadline => {
                bail!("{} did not answer on {endpoint} within 30 s; its log:\n{}", store.name, store.log_tail())
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// kube-apiserver: the binary, a PKI, its command line

/// Extracts `bin/kube` (the multicall binary) and `manifest.json` from the
/// payload once into `BENCH_DIR/k8s-api-bench-payload/<sha256>/`, next to a
/// `kube-apiserver` link to it. Returns the link and the Kubernetes version.
fn apiserver_binary(cfg: &Config) -> Result<(PathBuf, String)> {
    use sha2::Digest;
    let archive = cfg.payload_dir.join("payload.tar.zst");
    let mut file = std::fs::File::open(&archive)
        .with_context(|| format!("cannot open {} (K8S_PAYLOAD_DIR; `make dist` builds it)", archive.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    let hash = hex::encode(hasher.finalize());
    let root = cfg.bench_dir.join("k8s-api-bench-payload");
    let dir = root.join(&hash[..16]);
    let bin = dir.join("kube-apiserver");
    if !bin.exists() {
        std::fs::create_dir_all(&root)?;
        let tmp = root.join(format!(".tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        eprintln!("extracting kube-apiserver from {} into {}", archive.display(), dir.display());
        let decoder = zstd::Decoder::new(std::fs::File::open(&archive)?)?;
        let mut tar = tar::Archive::new(decoder);
        let mut found = 0;
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let name = match path.to_str() {
                Some("bin/kube") => "kube",
                Some("manifest.json") => "manifest.json",
                _ => continue,
            };
            entry.unpack(tmp.join(name))?;
            found += 1;
            if found == 2 {
                break;
            }
        }
        if !tmp.join("kube").exists() {
            bail!("{} holds no bin/kube", archive.display());
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.join("kube"), std::fs::Permissions::from_mode(0o755))?;
        // The multicall binary runs the component named by argv[0].
        std::os::unix::fs::symlink("kube", tmp.join("kube-apiserver"))?;
        if std::fs::rename(&tmp, &dir).is_err() && !bin.exists() {
            bail!("cannot move {} to {}", tmp.display(), dir.display());
        }
        let _ = std::fs::remove_dir_all(&tmp);
        // Older extractions.
        for e in std::fs::read_dir(&root)?.flatten() {
            if e.path() != dir && !e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let manifest: serde_json::Value = std::fs::read_to_string(dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let version = manifest["kubernetes_version"].as_str().unwrap_or("unknown").to_string();
    Ok((bin, version))
}

/// A throwaway PKI: a CA, the API server's serving cert for 127.0.0.1, an
/// admin client cert (O=system:masters) and a service-account key pair.
struct Pki {
    dir: PathBuf,
    ca_der: Vec<u8>,
    admin_cert: String,
    admin_key: String,
}

impl Pki {
    fn new(dir: &Path) -> Result<Pki> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, "k8s api bench CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = p.self_signed(&ca_key)?;

        let leaf = |cn: &str, org: Option<&str>, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(sans)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            if let Some(o) = org {
                p.distinguished_name.push(DnType::OrganizationName, o);
            }
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca, &ca_key)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (serving, serving_key) =
            leaf("kube-apiserver", None, vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth)?;
        let (admin_cert, admin_key) = leaf("bench-admin", Some("system:masters"), vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
        let sa = KeyPair::generate()?;
        let write = |name: &str, text: &str| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
        };
        write("ca.crt", &ca.pem())?;
        write("apiserver.crt", &serving)?;
        write("apiserver.key", &serving_key)?;
        write("sa.key", &sa.serialize_pem())?;
        write("sa.pub", &sa.public_key_pem())?;
        Ok(Pki { dir: dir.to_path_buf(), ca_der: ca.der().to_vec(), admin_cert, admin_key })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A kube-rs config for the admin at `url`.
    fn kube_config(&self, url: &str) -> Result<kube::Config> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut c = kube::Config::new(url.parse().with_context(|| format!("bad URL {url}"))?);
        c.root_cert = Some(vec![self.ca_der.clone()]);
        c.auth_info = kube::config::AuthInfo {
            client_certificate_data: Some(b64.encode(&self.admin_cert)),
            client_key_data: Some(b64.encode(&self.admin_key).into()),
            ..Default::default()
        };
        c.connect_timeout = Some(Duration::from_secs(5));
        Ok(c)
    }
}

/// The API server's audit policy and admission config: those `k8s server`
/// writes (templates/server/), so audit logging costs what it costs there.
const AUDIT_POLICY: &str = include_str!("../templates/server/audit-policy.yaml");
const ADMISSION: &str = include_str!("../templates/server/admission.yaml");

struct ApiServer {
    proc: Proc,
    config: kube::Config,
    client: kube::Client,
    ready_after: Duration,
}

impl ApiServer {
    /// Starts kube-apiserver on a free port of 127.0.0.1 against `etcd` and
    /// waits for /readyz. The flags are `k8s server`'s
    /// (src/server/control_plane.rs, standard profile) minus what needs a
    /// kubelet or front proxy; `--endpoint-reconciler-type=none` because the
    /// `kubernetes` Service cannot point at a loopback address.
    async fn start(bin: &Path, pki: &Pki, dir: &Path, etcd: &str, watch_cache: bool) -> Result<ApiServer> {
        std::fs::create_dir_all(dir)?;
        let (audit_policy, admission) = (dir.join("audit-policy.yaml"), dir.join("admission.yaml"));
        std::fs::write(&audit_policy, AUDIT_POLICY)?;
        std::fs::write(&admission, ADMISSION)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "--advertise-address=127.0.0.1".to_string(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--allow-privileged=true".into(),
            "--anonymous-auth=false".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!("--admission-control-config-file={}", admission.display()),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-maxage=30".into(),
            "--audit-log-maxsize=50".into(),
            "--audit-log-maxbackup=4".into(),
            format!("--client-ca-file={}", pki.path("ca.crt")),
            format!("--tls-cert-file={}", pki.path("apiserver.crt")),
            format!("--tls-private-key-file={}", pki.path("apiserver.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", pki.path("sa.pub")),
            format!("--service-account-signing-key-file={}", pki.path("sa.key")),
            "--service-cluster-ip-range=10.43.0.0/16".into(),
            "--profiling=false".into(),
            "--shutdown-watch-termination-grace-period=5s".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--etcd-servers={etcd}"),
            format!("--watch-cache={watch_cache}"),
        ]);
        let name = if watch_cache { "kube-apiserver" } else { "kube-apiserver (no watch cache)" };
        let log = dir.join("kube-apiserver.log");
        let mut proc = Proc::start(name, cmd, &log)?;
        let url = format!("https://127.0.0.1:{port}");
        let config = pki.kube_config(&url)?;
        let client = kube::Client::try_from(config.clone())?;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            proc.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new())?;
            let last = match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
                Ok(Ok(text)) if text.trim() == "ok" => break,
                Ok(Ok(text)) => text,
                Ok(Err(e)) => describe(&e.into()),
                Err(_) => "/readyz timed out".into(),
            };
            if Instant::now() > deadline {
                bail!("{name} not ready within 180 s ({last}); its log ({}):\n{}", log.display(), proc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ready_after = proc.spawned.elapsed();
        Ok(ApiServer { proc, config, client, ready_after })
    }

    /// `n` clients, each with its own connection pool.
    fn clients(&self, n: usize) -> Result<Vec<kube::Client>> {
        (0..n).map(|_| Ok(kube::Client::try_from(self.config.clone())?)).collect()
    }
}

// ---------------------------------------------------------------------------
// Measuring

/// The calls (and derived measures) a run records, in the order tables show them.
const V_EVENT: &str = "event delivery (sent → seen)";
const V_POST: &str = "POST (create)";
const V_PATCH: &str = "PATCH (merge)";
const V_PUT: &str = "PUT (update)";
const V_CONFLICT: &str = "409 Conflict answers";
const V_GET: &str = "GET after a conflict";
const V_UPDATE: &str = "update incl. retries";
const V_LIST: &str = "LIST call";
const V_WHOLE: &str = "whole list";
/// Pages per whole list (recorded as its "latencies"; not a table row).
const V_PAGES: &str = "pages";
const VERB_ORDER: [&str; 9] = [V_EVENT, V_POST, V_PATCH, V_PUT, V_CONFLICT, V_GET, V_UPDATE, V_LIST, V_WHOLE];

/// Which Kubernetes API latency SLO a call falls under: p99 ≤ 1 s for
/// single-object calls, ≤ 30 s for (cluster-scoped) lists.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Slo {
    Single,
    List,
    None,
}

impl Slo {
    fn limit_us(self) -> Option<u64> {
        match self {
            Slo::Single => Some(1_000_000),
            Slo::List => Some(30_000_000),
            Slo::None => None,
        }
    }
}

#[derive(Default, Clone)]
struct VerbStat {
    /// Latencies in microseconds (sorted once the run is over).
    lat: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl VerbStat {
    fn pct(&self, p: f64) -> Option<u64> {
        if self.lat.is_empty() {
            return None;
        }
        let idx = ((p * self.lat.len() as f64).ceil() as usize).clamp(1, self.lat.len()) - 1;
        Some(self.lat[idx])
    }
}

/// What the calls of one run record, per verb, in the order verbs first appear.
#[derive(Default)]
struct Rec {
    verbs: Mutex<Vec<(&'static str, Slo, VerbStat)>>,
}

impl Rec {
    fn new() -> Arc<Rec> {
        Arc::new(Rec::default())
    }

    fn with(&self, verb: &'static str, slo: Slo, f: impl FnOnce(&mut VerbStat)) {
        let mut verbs = self.verbs.lock().unwrap();
        match verbs.iter_mut().find(|(v, _, _)| *v == verb) {
            Some((_, _, s)) => f(s),
            None => {
                let mut s = VerbStat::default();
                f(&mut s);
                verbs.push((verb, slo, s));
            }
        }
    }

    fn ok(&self, verb: &'static str, slo: Slo, d: Duration) {
        self.with(verb, slo, |s| s.lat.push(d.as_micros() as u64));
    }

    fn err(&self, verb: &'static str, slo: Slo, e: &anyhow::Error) {
        self.with(verb, slo, |s| {
            s.errors += 1;
            s.first_error.get_or_insert_with(|| describe(e));
        });
    }

    fn record<T>(&self, verb: &'static str, slo: Slo, d: Duration, r: &Result<T>) {
        match r {
            Ok(_) => self.ok(verb, slo, d),
            Err(e) => self.err(verb, slo, e),
        }
    }

    fn count(&self, verb: &str) -> u64 {
        self.verbs.lock().unwrap().iter().find(|(v, _, _)| *v == verb).map_or(0, |(_, _, s)| s.lat.len() as u64)
    }
}

/// One row (one load of one workload) on one store.
#[derive(Default, Clone)]
struct Run {
    secs: f64,
    verbs: Vec<(String, Slo, VerbStat)>,
    notes: Vec<String>,
    /// Requests to the store during the run, as the API server saw them:
    /// (operation, count, total seconds).
    store: Vec<(String, f64, f64)>,
}

impl Run {
    fn from(rec: &Rec, secs: f64, notes: Vec<String>) -> Run {
        let verbs = rec
            .verbs
            .lock()
            .unwrap()
            .iter()
            .map(|(v, slo, s)| {
                let mut s = s.clone();
                s.lat.sort_unstable();
                (v.to_string(), *slo, s)
            })
            .collect();
        Run { secs, verbs, notes, store: Vec::new() }
    }
}

type Rows = Vec<(String, Run)>;

/// An error on one line: an API error as its code, reason and message.
fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => format!("{} {}: {}", s.code, s.reason, s.message),
        _ => format!("{e:#}"),
    }
}

fn is_conflict(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 409)
}

/// Every API call is bounded in time.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One API call and how long it took.
async fn call<T>(fut: impl Future<Output = kube::Result<T>>) -> (Duration, Result<T>) {
    let t = Instant::now();
    let r = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(_) => Err(anyhow!("no answer within {} s", CALL_TIMEOUT.as_secs())),
    };
    (t.elapsed(), r)
}

/// How a driver's run went.
struct Drive {
    secs: f64,
    issued: u64,
    total: u64,
    /// The most a call started after its turn (fixed rate only).
    lag: Duration,
    rate: Option<f64>,
}

impl Drive {
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.issued < self.total {
            notes.push(format!("time cap hit: {} of {} operations", self.issued, self.total));
        }
        if let Some(rate) = self.rate {
            if self.lag > Duration::from_millis(500) {
                notes.push(format!("fell behind the {rate:.0}/s schedule by up to {:.1} s", self.lag.as_secs_f64()));
            }
        }
        notes
    }
}

/// Starts `op(i)` for i in 0..total at `rate` per second, each not waiting
/// for the ones before (at most `max_inflight` at once, past which the
/// schedule slips), until the count or `cap` runs out; then waits for all.
async fn paced<F, Fut>(rate: f64, total: u64, cap: Duration, max_inflight: usize, op: F) -> Drive
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let (mut issued, mut lag) = (0, Duration::ZERO);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        while set.len() >= max_inflight {
            join_one(set.join_next().await);
        }
        while let Some(r) = set.try_join_next() {
            join_one(Some(r));
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(start) >= cap {
            break;
        }
        lag = lag.max(now.duration_since(at));
        set.spawn(op(i));
        issued += 1;
    }
    while let Some(r) = set.join_next().await {
        join_one(Some(r));
    }
    Drive { secs: start.elapsed().as_secs_f64(), issued, total, lag, rate: Some(rate) }
}

fn join_one(r: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = r {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// One worker per state, each calling `op` one operation at a time as fast
/// as it can, until `total` operations are handed out or `cap` runs out.
async fn saturate<S, F, Fut>(states: Vec<S>, total: u64, cap: Duration, op: F) -> Drive
where
    S: Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = S> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + cap;
    let op = Arc::new(op);
    let tasks: Vec<_> = states
        .into_iter()
        .map(|state| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                let mut state = state;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    state = op(state, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a benchmark worker panicked");
    }
    let issued = next.load(Ordering::Relaxed).min(total);
    Drive { secs: start.elapsed().as_secs_f64(), issued, total, lag: Duration::ZERO, rate: None }
}

/// Deterministic pseudo-random numbers (splitmix64): every store gets the
/// same sequence.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn value(len: usize, seed: u64) -> String {
    (0..len as u64).map(|i| (b'a' + (mix(seed ^ (i << 20)) % 26) as u8) as char).collect()
}

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the benchmark started: a timestamp writers put in the
/// objects they write and watchers compare with.
fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// Objects

/// The namespaces every workload spreads its objects over.
const NAMESPACES: u64 = 10;
/// Clients of the saturation runs (each its own connection pool).
const WORKERS: usize = 16;
/// Clients of the saturation runs of lists.
const LIST_WORKERS: usize = 8;
/// Operations per second of the fixed-rate runs.
const RATE: f64 = 100.0;
/// Whole lists per second of the fixed-rate list runs.
const LIST_RATE: f64 = 2.0;
/// Objects per page of a paginated list.
const PAGE: u32 = 500;
/// Calls in flight at most in the fixed-rate runs.
const MAX_INFLIGHT: usize = 64;

fn ns(i: u64) -> String {
    format!("bench-{}", i % NAMESPACES)
}

fn meta(name: &str, namespace: &str, label: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some([("bench".to_string(), label.to_string())].into()),
        ..Default::default()
    }
}

/// A ConfigMap with ~1 KiB of data.
fn configmap(name: &str, namespace: &str, label: &str, seed: u64) -> ConfigMap {
    ConfigMap { metadata: meta(name, namespace, label), data: Some([("v".to_string(), value(1024, seed))].into()), ..Default::default() }
}

/// A minimal Pod: nothing schedules or runs it, so it stays Pending.
fn pod(name: &str, namespace: &str, label: &str) -> Pod {
    Pod {
        metadata: meta(name, namespace, label),
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some("k8s.local/pause:latest".into()), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_configmap(c: kube::Client, rec: &Rec, i: u64, name: String) {
    let namespace = ns(i);
    let api: Api<ConfigMap> = Api::namespaced(c, &namespace);
    let (d, r) = call(api.create(&PostParams::default(), &configmap(&name, &namespace, "create", i))).await;
    rec.record(V_POST, Slo::Single, d, &r);
}

async fn create_pod(c: kube::Client, rec: &Rec, i: u64, name: String) {
    let namespace = ns(i);
    let api: Api<Pod> = Api::namespaced(c, &namespace);
    let (d, r) = call(api.create(&PostParams::default(), &pod(&name, &namespace, "create"))).await;
    rec.record(V_POST, Slo::Single, d, &r);
}

/// The namespaces, each with the `default` ServiceAccount the ServiceAccount
/// admission plugin looks up for Pods (no controller-manager creates it).
async fn setup_namespaces(client: &kube::Client) -> Result<()> {
    for i in 0..NAMESPACES {
        let name = ns(i);
        let namespace = Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.context("creating a namespace")?;
        let sa = ServiceAccount { metadata: ObjectMeta { name: Some("default".into()), ..Default::default() }, ..Default::default() };
        Api::<ServiceAccount>::namespaced(client.clone(), &name)
            .create(&PostParams::default(), &sa)
            .await
            .context("creating a ServiceAccount")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The API server's own view (/metrics)

/// The series of an API server's /metrics this benchmark reads.
const SERIES: [&str; 7] = [
    "etcd_request_duration_seconds_sum",
    "etcd_request_duration_seconds_count",
    "apiserver_watch_cache_read_wait_seconds_sum",
    "apiserver_watch_cache_read_wait_seconds_count",
    "etcd_requests_total",
    "apiserver_storage_list_total",
    "apiserver_watch_cache_consistent_read_total",
];

/// Counters of one scrape of /metrics (or the difference of two), by series
/// (name and labels).
#[derive(Default, Clone)]
struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    async fn scrape(client: &kube::Client) -> Result<Metrics> {
        let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
        let mut m = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            if SERIES.contains(&series.split('{').next().unwrap_or("")) {
                m.insert(series.to_string(), value.parse().unwrap_or(0.0));
            }
        }
        Ok(Metrics(m))
    }

    fn since(&self, before: &Metrics) -> Metrics {
        Metrics(self.0.iter().map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0))).collect())
    }

    /// The sum of the series called `name` whose labels hold every one of `with`.
    fn sum(&self, name: &str, with: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name) && with.iter().all(|w| k.contains(w)))
            .map(|(_, v)| v)
            .sum::<f64>()
            // An empty sum is -0.0.
            + 0.0
    }

    /// Requests to the store by operation (all resources): how many and
    /// their total seconds, as the API server timed them.
    fn store_calls(&self) -> Vec<(String, f64, f64)> {
        let mut ops: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (k, v) in &self.0 {
            let is_count = match k.split('{').next() {
                Some("etcd_request_duration_seconds_count") => true,
                Some("etcd_request_duration_seconds_sum") => false,
                _ => continue,
            };
            let Some(op) = k.split("operation=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
            let e = ops.entry(op.to_string()).or_default();
            if is_count {
                e.0 += v;
            } else {
                e.1 += v;
            }
        }
        ops.into_iter().filter(|(_, (n, _))| *n > 0.0).map(|(op, (n, secs))| (op, n, secs)).collect()
    }

    /// Reads of the workload's resources (and of those its admission looks
    /// up) that waited for the watch cache to catch up with the store's
    /// revision: consistent reads served from the cache. Other resources'
    /// waits (one now and then, the API server's own) are left out.
    fn cache_waits(&self) -> Option<String> {
        const RESOURCES: [&str; 6] = ["configmaps", "pods", "limitranges", "resourcequotas", "serviceaccounts", "namespaces"];
        let mut by: Vec<String> = Vec::new();
        for res in RESOURCES {
            let label = format!("resource=\"{res}\"");
            let n = self.sum("apiserver_watch_cache_read_wait_seconds_count", &[&label]);
            if n >= 1.0 {
                let secs = self.sum("apiserver_watch_cache_read_wait_seconds_sum", &[&label]);
                by.push(format!("{res} {n:.0} × {:.1} ms", secs / n * 1e3));
            }
        }
        (!by.is_empty()).then(|| format!("reads that waited for the watch cache to catch up with the store: {}", by.join(", ")))
    }
}

/// Runs one row, with the API server's store calls during it.
async fn measured<F: Future<Output = Result<Run>>>(client: &kube::Client, row: F) -> Result<(Run, Metrics)> {
    let before = Metrics::scrape(client).await?;
    let mut run = row.await?;
    let diff = Metrics::scrape(client).await?.since(&before);
    run.store = diff.store_calls();
    run.notes.extend(diff.cache_waits());
    Ok((run, diff))
}

// ---------------------------------------------------------------------------
// Workload 1: creates

async fn w_create(cfg: &Config, api: &ApiServer) -> Result<Rows> {
    let mut rows = Vec::new();
    for (kind, sat_total) in [("ConfigMap (1 KiB)", 6_000), ("Pod", 4_000)] {
        let is_pod = kind == "Pod";
        let create = move |c: kube::Client, rec: Arc<Rec>, i: u64, name: String| async move {
            if is_pod {
                create_pod(c, &rec, i, name).await
            } else {
                create_configmap(c, &rec, i, name).await
            }
        };
        let letter = if is_pod { ['c', 'd'] } else { ['a', 'b'] };
        // Fixed rate.
        let rec = Rec::new();
        let (client, r) = (api.client.clone(), rec.clone());
        let (run, _) = measured(&api.client, async {
            let d = paced(RATE, cfg.n(1_000, 100), cfg.cap(20.0), MAX_INFLIGHT, move |i| create(client.clone(), r.clone(), i, format!("r-{i}"))).await;
            Ok(Run::from(&rec, d.secs, d.notes()))
        })
        .await?;
        rows.push((format!("1{}. create {kind}, {RATE:.0}/s", letter[0]), run));
        // Saturation.
        let rec = Rec::new();
        let r = rec.clone();
        let clients = api.clients(WORKERS)?;
        let (run, _) = measured(&api.client, async {
            let d = saturate(clients, cfg.n(sat_total, 200), cfg.cap(15.0), move |c, i| {
                let r = r.clone();
                async move {
                    create(c.clone(), r, i, format!("s-{i}")).await;
                    c
                }
            })
            .await;
            Ok(Run::from(&rec, d.secs, d.notes()))
        })
        .await?;
        rows.push((format!("1{}. create {kind}, {WORKERS} clients", letter[1]), run));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Workload 2: updates with conflicts

/// ConfigMaps several clients update at once.
const HOT: u64 = 20;

/// Keeps the newer of two versions of an object (resourceVersions of these
/// stores are revisions: numbers).
fn remember(slot: &Mutex<ConfigMap>, obj: ConfigMap) {
    let rv = |cm: &ConfigMap| cm.metadata.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut cur = slot.lock().unwrap();
    if rv(&obj) >= rv(&cur) {
        *cur = obj;
    }
}

/// One update as a controller does it: PUT the version it knows (shared by
/// all clients, like an informer's cache) with its resourceVersion as the
/// precondition; on 409 Conflict GET the current one and try again.
async fn update_one(c: kube::Client, known: &[Mutex<ConfigMap>], rec: &Rec, i: u64) {
    let k = (mix(i ^ 0x0BAD_5EED) % known.len() as u64) as usize;
    let t0 = Instant::now();
    for _ in 0..50 {
        let mut cm = known[k].lock().unwrap().clone();
        let (name, namespace) = (cm.metadata.name.clone().unwrap_or_default(), cm.metadata.namespace.clone().unwrap_or_default());
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), &namespace);
        cm.metadata.managed_fields = None;
        cm.data.get_or_insert_with(Default::default).insert("v".into(), value(1024, i));
        let (d, r) = call(api.replace(&name, &PostParams::default(), &cm)).await;
        match r {
            Ok(new) => {
                rec.ok(V_PUT, Slo::Single, d);
                remember(&known[k], new);
                rec.ok(V_UPDATE, Slo::None, t0.elapsed());
                return;
            }
            Err(e) if is_conflict(&e) => {
                rec.ok(V_PUT, Slo::Single, d);
                rec.ok(V_CONFLICT, Slo::None, d);
                let (d, r) = call(api.get(&name)).await;
                rec.record(V_GET, Slo::Single, d, &r);
                match r {
                    Ok(cur) => remember(&known[k], cur),
                    Err(e) => return rec.err(V_UPDATE, Slo::None, &e),
                }
            }
            Err(e) => {
                rec.err(V_PUT, Slo::Single, &e);
                return rec.err(V_UPDATE, Slo::None, &e);
            }
        }
    }
    rec.err(V_UPDATE, Slo::None, &anyhow!("50 conflicts in a row"));
}

async fn w_update(cfg: &Config, api: &ApiServer) -> Result<Rows> {
    let mut rows = Vec::new();
    for saturation in [false, true] {
        // Fresh objects per run, created first (not measured).
        let tag = if saturation { "b" } else { "a" };
        let mut known = Vec::new();
        for k in 0..HOT {
            let namespace = ns(k);
            let cm = configmap(&format!("hot-{tag}-{k}"), &namespace, "update", k);
            let created = Api::<ConfigMap>::namespaced(api.client.clone(), &namespace)
                .create(&PostParams::default(), &cm)
                .await
                .context("creating the ConfigMaps to update")?;
            known.push(Mutex::new(created));
        }
        let known = Arc::new(known);
        let rec = Rec::new();
        let clients = api.clients(WORKERS)?;
        let (mut run, m) = measured(&api.client, async {
            let d = if saturation {
                let (k2, r) = (known.clone(), rec.clone());
                saturate(clients, cfg.n(8_000, 200), cfg.cap(15.0), move |c, i| {
                    let (known, r) = (k2.clone(), r.clone());
                    async move {
                        update_one(c.clone(), &known, &r, i).await;
                        c
                    }
                })
                .await
            } else {
                let (k2, r, client) = (known.clone(), rec.clone(), api.client.clone());
                paced(RATE, cfg.n(1_000, 100), cfg.cap(20.0), MAX_INFLIGHT, move |i| {
                    let (known, r, c) = (k2.clone(), r.clone(), client.clone());
                    async move { update_one(c, &known, &r, i).await }
                })
                .await
            };
            Ok(Run::from(&rec, d.secs, d.notes()))
        })
        .await?;
        let (updates, conflicts, puts) = (rec.count(V_UPDATE), rec.count(V_CONFLICT), rec.count(V_PUT));
        let res = "resource=\"configmaps\"";
        let txns = m.sum("etcd_requests_total", &[res, "operation=\"update\""]);
        let gets = m.sum("etcd_requests_total", &[res, "operation=\"get\""]);
        run.notes.push(format!(
            "{conflicts} conflicts (409) in {updates} updates; the API server sent the store {:.2} update Txns and {:.2} gets per PUT",
            txns / puts.max(1) as f64,
            gets / puts.max(1) as f64,
        ));
        let name = if saturation {
            format!("2b. update {HOT} ConfigMaps, {WORKERS} clients")
        } else {
            format!("2a. update {HOT} ConfigMaps, {RATE:.0}/s")
        };
        rows.push((name, run));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Workload 3: lists

#[derive(Clone, Copy, PartialEq)]
enum ListMode {
    /// resourceVersion=0 (resourceVersionMatch=NotOlderThan): any version,
    /// served by the watch cache, which ignores the limit (and kube-rs does
    /// not send one with resourceVersion=0): the whole list in one answer.
    Any,
    /// resourceVersion unset, limit 500: a consistent read, paginated; the
    /// API server decides where it is served from.
    Consistent,
    /// The same, through a second API server with --watch-cache=false: every
    /// page a range on the store.
    NoCache,
}

impl ListMode {
    fn label(self) -> &'static str {
        match self {
            ListMode::Any => "resourceVersion=0 (watch cache)",
            ListMode::Consistent => "consistent, limit 500",
            ListMode::NoCache => "consistent, limit 500, no watch cache",
        }
    }
}

/// One whole list of all namespaces, page after page.
async fn list_all<K>(api: &Api<K>, mode: ListMode, rec: &Rec, expect: usize) -> Result<()>
where
    K: Clone + DeserializeOwned + Debug,
{
    let t0 = Instant::now();
    let mut lp = match mode {
        ListMode::Any => ListParams::default().match_any(),
        _ => ListParams::default().limit(PAGE),
    };
    let (mut items, mut pages) = (0usize, 0u64);
    loop {
        let (d, r) = call(api.list(&lp)).await;
        rec.record(V_LIST, Slo::List, d, &r);
        let list = match r {
            Ok(list) => list,
            Err(e) => {
                rec.err(V_WHOLE, Slo::None, &e);
                return Err(e);
            }
        };
        items += list.items.len();
        pages += 1;
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) if pages < 100_000 => lp.continue_token = Some(c),
            _ => break,
        }
    }
    if items < expect {
        let e = anyhow!("a list returned {items} objects, expected {expect}");
        rec.err(V_WHOLE, Slo::None, &e);
        return Err(e);
    }
    rec.ok(V_WHOLE, Slo::None, t0.elapsed());
    rec.with(V_PAGES, Slo::None, |s| s.lat.push(pages));
    Ok(())
}

/// What served an API server's lists of one resource (from a difference of
/// two scrapes of its /metrics).
fn served_note(m: &Metrics, resource: &str) -> String {
    let res = format!("resource=\"{resource}\"");
    let cache = m.sum("apiserver_storage_list_total", &[&res, "storage=\"watchcache\""]);
    let storage = m.sum("apiserver_storage_list_total", &[&res, "storage=\"etcd\""]);
    let ranges = m.sum("etcd_requests_total", &[&res, "operation=\"list"]);
    let rev = m.sum("etcd_requests_total", &[&res, "operation=\"getCurrentResourceVersion\""]);
    let from_cache = m.sum("apiserver_watch_cache_consistent_read_total", &[&res, "fallback=\"false\""]);
    let fallback = m.sum("apiserver_watch_cache_consistent_read_total", &[&res, "fallback=\"true\""]);
    let mut s = format!("LIST calls answered by the watch cache {cache:.0}, by the store {storage:.0}; store list ranges {ranges:.0}");
    if rev > 0.0 {
        s += &format!(", current-revision reads {rev:.0}");
    }
    if from_cache + fallback > 0.0 {
        s += &format!("; consistent reads from the cache {from_cache:.0} (fallback to the store {fallback:.0})");
    }
    s
}

/// How many objects of a kind exist, all namespaces.
async fn count<K>(api: &Api<K>) -> Result<usize>
where
    K: Clone + DeserializeOwned + Debug,
{
    let (mut lp, mut n) = (ListParams::default().limit(PAGE), 0);
    loop {
        let list = api.list(&lp).await?;
        n += list.items.len();
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp.continue_token = Some(c),
            None => return Ok(n),
        }
    }
}

/// Creates objects (16 clients, not measured) until `target` exist.
async fn top_up(api: &ApiServer, is_pod: bool, target: u64) -> Result<usize> {
    let have = if is_pod { count(&Api::<Pod>::all(api.client.clone())).await? } else { count(&Api::<ConfigMap>::all(api.client.clone())).await? } as u64;
    if have < target {
        let rec = Rec::new();
        let r = rec.clone();
        saturate(api.clients(WORKERS)?, target - have, Duration::from_secs(300), move |c, i| {
            let r = r.clone();
            async move {
                if is_pod {
                    create_pod(c.clone(), &r, i, format!("f-{i}")).await
                } else {
                    create_configmap(c.clone(), &r, i, format!("f-{i}")).await
                }
                c
            }
        })
        .await;
        let run = Run::from(&rec, 0.0, vec![]);
        if let Some((_, _, s)) = run.verbs.iter().find(|(_, _, s)| s.errors > 0) {
            bail!("creating objects to list: {} errors, first: {}", s.errors, s.first_error.as_deref().unwrap_or("?"));
        }
    }
    Ok(if is_pod { count(&Api::<Pod>::all(api.client.clone())).await? } else { count(&Api::<ConfigMap>::all(api.client.clone())).await? })
}

async fn list_rows<K>(cfg: &Config, main: &ApiServer, nocache: &ApiServer, kind: &str, resource: &str, rows: &mut Rows, first: char) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let is_pod = resource == "pods";
    // More than workload 1 creates (and the same for every store).
    let target = if is_pod { cfg.n(6_000, 600) } else { cfg.n(8_000, 800) };
    let expect = top_up(main, is_pod, target).await?;
    let mut letter = first;
    let loads: &[bool] = if is_pod { &[true] } else { &[false, true] };
    for mode in [ListMode::Any, ListMode::Consistent, ListMode::NoCache] {
        let server = if mode == ListMode::NoCache { nocache } else { main };
        for &saturation in loads {
            let rec = Rec::new();
            let states: Vec<Api<K>> = server.clients(LIST_WORKERS)?.into_iter().map(Api::<K>::all).collect();
            let (mut run, m) = measured(&server.client, async {
                let d = if saturation {
                    let r = rec.clone();
                    saturate(states, cfg.n(300, 20), cfg.cap(15.0), move |api, _| {
                        let r = r.clone();
                        async move {
                            let _ = list_all(&api, mode, &r, expect).await;
                            api
                        }
                    })
                    .await
                } else {
                    let (r, a) = (rec.clone(), Api::<K>::all(server.client.clone()));
                    paced(LIST_RATE, cfg.n(20, 6), cfg.cap(20.0), 16, move |_| {
                        let (r, a) = (r.clone(), a.clone());
                        async move {
                            let _ = list_all(&a, mode, &r, expect).await;
                        }
                    })
                    .await
                };
                Ok(Run::from(&rec, d.secs, d.notes()))
            })
            .await?;
            run.notes.push(format!("{expect} {kind}s per list; {}", served_note(&m, resource)));
            let load = if saturation { format!("{LIST_WORKERS} clients") } else { format!("{LIST_RATE:.0} lists/s") };
            rows.push((format!("3{letter}. list {kind}s, {}, {load}", mode.label()), run));
            letter = (letter as u8 + 1) as char;
        }
    }
    Ok(())
}

async fn w_list(cfg: &Config, main: &ApiServer, nocache: &ApiServer) -> Result<Rows> {
    let mut rows = Vec::new();
    list_rows::<ConfigMap>(cfg, main, nocache, "ConfigMap", "configmaps", &mut rows, 'a').await?;
    list_rows::<Pod>(cfg, main, nocache, "Pod", "pods", &mut rows, 'g').await?;
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Workload 4: watches

/// Watchers per namespace, and of all namespaces.
const NS_WATCHERS: u64 = 4;
const ALL_WATCHERS: u64 = 10;

/// Writes the watchers should see: per namespace, and in all.
struct Written {
    per_ns: Vec<AtomicU64>,
    done: AtomicBool,
}

impl Written {
    fn total(&self) -> u64 {
        self.per_ns.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    events: u64,
    duplicates: u64,
    errors: Vec<String>,
    last_ns: u64,
}

/// One write of the watch workload: create a ConfigMap, then patch it; both
/// carry the time they were sent, which the watchers compare with the time
/// the event reached them.
async fn watch_write(c: kube::Client, rec: &Rec, written: &Written, tag: &str, i: u64) {
    let namespace = ns(i);
    let api: Api<ConfigMap> = Api::namespaced(c, &namespace);
    let name = format!("w-{tag}-{i}");
    let mut cm = configmap(&name, &namespace, &format!("watch-{tag}"), i);
    cm.data.get_or_insert_with(Default::default).insert("sent".into(), now_ns().to_string());
    let (d, r) = call(api.create(&PostParams::default(), &cm)).await;
    rec.record(V_POST, Slo::Single, d, &r);
    if r.is_err() {
        return;
    }
    written.per_ns[(i % NAMESPACES) as usize].fetch_add(1, Ordering::Relaxed);
    let patch = serde_json::json!({ "data": { "sent": now_ns().to_string() } });
    let (d, r) = call(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await;
    rec.record(V_PATCH, Slo::Single, d, &r);
    if r.is_ok() {
        written.per_ns[(i % NAMESPACES) as usize].fetch_add(1, Ordering::Relaxed);
    }
}

async fn w_watch(cfg: &Config, api: &ApiServer) -> Result<Rows> {
    let mut rows = Vec::new();
    for saturation in [false, true] {
        let tag = if saturation { "b" } else { "a" };
        let label = format!("watch-{tag}");
        // Watch from the current revision: only the writes below.
        let rv = Api::<ConfigMap>::all(api.client.clone())
            .list(&ListParams::default().limit(1))
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let rec = Rec::new();
        let written = Arc::new(Written { per_ns: (0..NAMESPACES).map(|_| AtomicU64::new(0)).collect(), done: AtomicBool::new(false) });
        let watch_client = kube::Client::try_from(api.config.clone())?;
        let wp = WatchParams::default().labels(&format!("bench={label}")).timeout(290);
        let mut watchers = Vec::new();
        for w in 0..NAMESPACES * NS_WATCHERS + ALL_WATCHERS {
            // None: all namespaces.
            let scope = (w < NAMESPACES * NS_WATCHERS).then_some(w % NAMESPACES);
            let api: Api<ConfigMap> = match scope {
                Some(n) => Api::namespaced(watch_client.clone(), &ns(n)),
                None => Api::all(watch_client.clone()),
            };
            let stream = api.watch(&wp, &rv).await.context("starting a watch")?.boxed();
            let (rec, written) = (rec.clone(), written.clone());
            watchers.push(tokio::spawn(async move {
                let mut stream = stream;
                let mut seen = Seen::default();
                let mut keys = HashSet::new();
                let mut give_up: Option<Instant> = None;
                loop {
                    let expected = match scope {
                        Some(n) => written.per_ns[n as usize].load(Ordering::Relaxed),
                        None => written.total(),
                    };
                    if written.done.load(Ordering::Relaxed) {
                        if seen.events >= expected {
                            break;
                        }
                        let at = *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(15));
                        if Instant::now() > at {
                            break;
                        }
                    }
                    let ev = match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
                        Err(_) => continue,
                        Ok(None) => {
                            seen.errors.push("the watch ended".into());
                            break;
                        }
                        Ok(Some(Err(e))) => {
                            seen.errors.push(describe(&e.into()));
                            break;
                        }
                        Ok(Some(Ok(ev))) => ev,
                    };
                    let (cm, kind) = match ev {
                        WatchEvent::Added(cm) => (cm, "added"),
                        WatchEvent::Modified(cm) => (cm, "modified"),
                        WatchEvent::Bookmark(_) => continue,
                        WatchEvent::Deleted(_) => continue,
                        WatchEvent::Error(e) => {
                            seen.errors.push(format!("{} {}: {}", e.code, e.reason, e.message));
                            break;
                        }
                    };
                    let t = now_ns();
                    let sent = cm.data.as_ref().and_then(|d| d.get("sent")).and_then(|s| s.parse::<u64>().ok());
                    if !keys.insert(format!("{}/{}/{kind}", cm.metadata.namespace.unwrap_or_default(), cm.metadata.name.unwrap_or_default())) {
                        seen.duplicates += 1;
                        continue;
                    }
                    seen.events += 1;
                    seen.last_ns = t;
                    if let Some(sent) = sent {
                        rec.ok(V_EVENT, Slo::None, Duration::from_nanos(t.saturating_sub(sent)));
                    }
                }
                (scope, seen)
            }));
        }
        let before = Metrics::scrape(&api.client).await?;
        let start_ns = now_ns();
        let (w2, r) = (written.clone(), rec.clone());
        let tag2 = tag.to_string();
        let (d, name) = if saturation {
            let d = saturate(api.clients(WORKERS)?, cfg.n(4_000, 100), cfg.cap(15.0), move |c, i| {
                let (written, r, tag) = (w2.clone(), r.clone(), tag2.clone());
                async move {
                    watch_write(c.clone(), &r, &written, &tag, i).await;
                    c
                }
            })
            .await;
            (d, format!("4b. watch ConfigMaps: {WORKERS} writers (create, then patch)"))
        } else {
            let client = api.client.clone();
            let d = paced(RATE, cfg.n(1_000, 100), cfg.cap(20.0), MAX_INFLIGHT, move |i| {
                let (written, r, c, tag) = (w2.clone(), r.clone(), client.clone(), tag2.clone());
                async move { watch_write(c, &r, &written, &tag, i).await }
            })
            .await;
            (d, format!("4a. watch ConfigMaps: {RATE:.0} creates/s + {RATE:.0} patches/s"))
        };
        written.done.store(true, Ordering::Relaxed);
        let (mut events, mut expected, mut dups, mut last, mut errors) = (0, 0, 0, 0, Vec::new());
        for w in watchers {
            let (scope, seen) = w.await.expect("a watcher panicked");
            events += seen.events;
            dups += seen.duplicates;
            last = last.max(seen.last_ns);
            errors.extend(seen.errors);
            expected += match scope {
                Some(n) => written.per_ns[n as usize].load(Ordering::Relaxed),
                None => written.total(),
            };
        }
        let secs = (last.max(start_ns) - start_ns) as f64 / 1e9;
        let mut notes = d.notes();
        notes.push(format!(
            "{} watchers ({} per namespace, {ALL_WATCHERS} of all namespaces); {} writes; {events} of {expected} events delivered{}{}",
            NAMESPACES * NS_WATCHERS + ALL_WATCHERS,
            NS_WATCHERS,
            written.total(),
            if dups > 0 { format!(", {dups} duplicates") } else { String::new() },
            if events < expected { format!(", {} MISSING", expected - events) } else { String::new() },
        ));
        if let Some(e) = errors.first() {
            notes.push(format!("{} watch errors, first: {e}", errors.len()));
        }
        let mut run = Run::from(&rec, secs.max(d.secs), notes);
        let diff = Metrics::scrape(&api.client).await?.since(&before);
        run.store = diff.store_calls();
        run.notes.extend(diff.cache_waits());
        rows.push((name, run));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// One store, start to end

const WORKLOADS: [(u32, &str); 4] = [
    (1, "1. create"),
    (2, "2. update with conflicts (GuaranteedUpdate)"),
    (3, "3. paginated lists"),
    (4, "4. watch"),
];

#[derive(Default)]
struct StoreRun {
    workloads: BTreeMap<u32, std::result::Result<Rows, String>>,
    store: Usage,
    apiserver: Usage,
    nocache: Usage,
    client_cpu: f64,
    /// CPU seconds used on the machine during the store's turns by
    /// everything but this benchmark's processes (the noise in the figures).
    other_cpu: f64,
    disk: u64,
    store_ready: Duration,
    api_ready: Duration,
    nocache_ready: Duration,
    secs: f64,
}

/// One store and its API server, alive through the whole benchmark.
struct Stack {
    idx: usize,
    dir: PathBuf,
    store: Proc,
    endpoint: String,
    data_dir: PathBuf,
    api: ApiServer,
    run: StoreRun,
    /// Why the rest of this store's workloads cannot run.
    failed: Option<String>,
}

impl Stack {
    /// Starts the store fresh, then kube-apiserver on it, and creates the
    /// namespaces. Call from the main thread (see `Proc::start`).
    async fn start(cfg: &Config, idx: usize, root: &Path, bin: &Path, pki: &Pki) -> Result<Stack> {
        let name = NAMES[idx];
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let (mut store, endpoint, data_dir) = start_store(cfg, idx, &dir)?;
        let mut run = StoreRun { store_ready: wait_store(&mut store, &endpoint).await?, ..Default::default() };
        eprintln!("[{name}] store ready in {:.2} s (pid {}), starting kube-apiserver", run.store_ready.as_secs_f64(), store.pid());
        let api = ApiServer::start(bin, pki, &dir.join("apiserver"), &endpoint, true).await?;
        run.api_ready = api.ready_after;
        eprintln!("[{name}] kube-apiserver ready in {:.1} s (pid {})", api.ready_after.as_secs_f64(), api.proc.pid());
        setup_namespaces(&api.client).await?;
        Ok(Stack { idx, dir, store, endpoint, data_dir, api, run, failed: None })
    }

    /// CPU seconds of the store and its API server so far.
    fn cpu(&self) -> f64 {
        self.store.cpu_seconds() + self.api.proc.cpu_seconds()
    }

    /// One workload on this stack; the list workload starts (and stops) the
    /// second API server, without a watch cache.
    async fn workload(&mut self, cfg: &Config, num: u32, bin: &Path, pki: &Pki) -> Result<Rows> {
        match num {
            1 => w_create(cfg, &self.api).await,
            2 => w_update(cfg, &self.api).await,
            3 => {
                let nocache = ApiServer::start(bin, pki, &self.dir.join("apiserver-nocache"), &self.endpoint, false).await?;
                self.run.nocache_ready = nocache.ready_after;
                let r = w_list(cfg, &self.api, &nocache).await;
                let usage = usage(&nocache.proc);
                self.run.nocache.hwm = self.run.nocache.hwm.max(usage.hwm);
                self.run.nocache.cpu += usage.cpu;
                r
            }
            _ => w_watch(cfg, &self.api).await,
        }
    }
}

/// A store whose run stopped: every wanted workload says why.
fn failed_run(cfg: &Config, why: &str) -> StoreRun {
    let mut r = StoreRun::default();
    for (num, _) in WORKLOADS {
        if cfg.wants(num) {
            r.workloads.insert(num, Err(why.to_string()));
        }
    }
    r
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Reporting

fn fmt_lat(us: Option<u64>) -> String {
    match us {
        None => "–".into(),
        Some(us) => {
            let ms = us as f64 / 1000.0;
            if ms < 10.0 {
                format!("{ms:.2} ms")
            } else if ms < 1000.0 {
                format!("{ms:.1} ms")
            } else {
                format!("{:.2} s", ms / 1000.0)
            }
        }
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r < 10.0 => format!("{r:.2}"),
        Some(r) => format!("{r:.0}"),
    }
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Two cells: ours/etcd and ours/kine of `v`, or (`inverse`) etcd/ours and
/// kine/ours: either way above 1 means ours does better.
fn ratios(v: [Option<f64>; N], inverse: bool) -> String {
    if inverse {
        format!("{} | {}", fmt_ratio(v[ETCD], v[OURS]), fmt_ratio(v[KINE], v[OURS]))
    } else {
        format!("{} | {}", fmt_ratio(v[OURS], v[ETCD]), fmt_ratio(v[OURS], v[KINE]))
    }
}

fn fmt_bytes(b: u64) -> String {
    if b == 0 {
        return "–".into();
    }
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib >= 10.0 { format!("{mib:.0} MiB") } else { format!("{mib:.1} MiB") }
}

fn cell(text: &str) -> String {
    let text = text.replace('|', "\\|").replace('\n', " ");
    if text.chars().count() > 200 { format!("{}…", text.chars().take(200).collect::<String>()) } else { text }
}



fn workload_table(label: &str, num: u32, runs: &[Option<StoreRun>; N]) {
    let rows_of = |i: usize| runs[i].as_ref().and_then(|r| r.workloads.get(&num));
    if (0..N).all(|i| rows_of(i).is_none()) {
        return;
    }
    println!();
    println!("### {label}");
    println!();
    println!(
        "| run | call | ours ops/s | etcd ops/s | kine ops/s | ops/s ours/etcd | ops/s ours/kine \
         | ours p50 | etcd p50 | kine p50 | p50 etcd/ours | p50 kine/ours \
         | ours p99 | etcd p99 | kine p99 | p99 etcd/ours | p99 kine/ours | SLO |"
    );
    println!("|---|---|{}---|", "---:|".repeat(15));
    // (row, verb) in the order the first store that ran has them.
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut keys_order: Vec<String> = Vec::new();
    for i in RUN_ORDER {
        if let Some(Ok(rows)) = rows_of(i) {
            for (row, run) in rows {
                if !keys_order.contains(row) {
                    keys_order.push(row.clone());
                }
                for (verb, _, _) in &run.verbs {
                    if verb != V_PAGES && !keys.iter().any(|(r, v)| r == row && v == verb) {
                        keys.push((row.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    // Verbs in one order in every row.
    keys.sort_by_key(|(row, verb)| {
        let first = keys_order.iter().position(|r| r == row).unwrap_or(usize::MAX);
        (first, VERB_ORDER.iter().position(|v| v == verb).unwrap_or(usize::MAX))
    });
    let mut notes = Vec::new();
    let mut last_row = String::new();
    for (row, verb) in &keys {
        let found: [Option<(&Run, Slo, &VerbStat)>; N] = std::array::from_fn(|i| match rows_of(i) {
            Some(Ok(rows)) => rows.iter().find(|(r, _)| r == row).and_then(|(_, run)| {
                run.verbs.iter().find(|(v, _, _)| v == verb).map(|(_, slo, s)| (run, *slo, s))
            }),
            _ => None,
        });
        let rate: [Option<f64>; N] = found.map(|f| f.and_then(|(run, _, s)| (run.secs > 0.0).then(|| s.lat.len() as f64 / run.secs)));
        let [p50, p99] = [0.5, 0.99].map(|p| found.map(|f| f.and_then(|(_, _, s)| s.pct(p))));
        let lat = |v: [Option<u64>; N]| {
            let f = v.map(|x| x.map(|x| x as f64));
            format!("{} | {} | {} | {}", fmt_lat(v[OURS]), fmt_lat(v[ETCD]), fmt_lat(v[KINE]), ratios(f, true))
        };
        let slo = found.iter().find_map(|f| f.map(|(_, slo, _)| slo)).unwrap_or(Slo::None);
        let verdict = match slo.limit_us() {
            None => "–".to_string(),
            Some(limit) => {
                let missed: Vec<String> = (0..N)
                    .filter_map(|i| p99[i].filter(|&p| p > limit).map(|p| format!("{} {}", NAMES[i], fmt_lat(Some(p)))))
                    .collect();
                let bound = if slo == Slo::List { "p99 ≤ 30 s" } else { "p99 ≤ 1 s" };
                if missed.is_empty() { format!("met ({bound})") } else { format!("**missed** ({bound}): {}", missed.join(", ")) }
            }
        };
        let row_cell = if *row == last_row { "〃".to_string() } else { row.clone() };
        last_row = row.clone();
        println!(
            "| {row_cell} | {verb} | {} | {} | {} | {} | {} | {} | {verdict} |",
            fmt_rate(rate[OURS]), fmt_rate(rate[ETCD]), fmt_rate(rate[KINE]), ratios(rate, false), lat(p50), lat(p99)
        );
        for i in 0..N {
            if let Some((_, _, s)) = found[i] {
                if s.errors > 0 {
                    notes.push(format!(
                        "- {} {} {verb}: {} errors, first: {}",
                        row.split_whitespace().next().unwrap_or(""),
                        NAMES[i],
                        s.errors,
                        cell(s.first_error.as_deref().unwrap_or("?"))
                    ));
                }
            }
        }
    }
    // Each row's notes, per store.
    let mut rows_seen: Vec<&String> = Vec::new();
    for (row, _) in &keys {
        if rows_seen.contains(&row) {
            continue;
        }
        rows_seen.push(row);
        for (i, store) in NAMES.iter().enumerate() {
            if let Some(Ok(rows)) = rows_of(i) {
                if let Some((_, run)) = rows.iter().find(|(r, _)| r == row) {
                    let mut bits = run.notes.clone();
                    if let Some((_, _, pages)) = run.verbs.iter().find(|(v, _, _)| v == V_PAGES) {
                        if let (Some(lo), Some(hi)) = (pages.lat.first(), pages.lat.last()) {
                            bits.push(if lo == hi { format!("pages per list: {lo}") } else { format!("pages per list: {lo}–{hi}") });
                        }
                    }
                    if !bits.is_empty() {
                        notes.push(format!("- {} {store}: {}", row.split_whitespace().next().unwrap_or(""), bits.join("; ")));
                    }
                }
            }
        }
    }
    for (i, store) in NAMES.iter().enumerate() {
        if let Some(Err(e)) = rows_of(i) {
            notes.push(format!("- {label} failed on {store}: {}", cell(e)));
        }
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("{n}");
        }
    }
    store_table(&keys_order, &rows_of);
}

/// The layer below, in the same runs: the API server's requests to the store
/// (its etcd_request_duration_seconds histogram: count and sum) per operation.
fn store_table<'a>(rows: &[String], rows_of: &dyn Fn(usize) -> Option<&'a std::result::Result<Rows, String>>) {
    let run_of = |i: usize, row: &str| match rows_of(i) {
        Some(Ok(rows)) => rows.iter().find(|(r, _)| r == row).map(|(_, run)| run),
        _ => None,
    };
    let mut lines = Vec::new();
    for row in rows {
        let mut ops: Vec<&str> = Vec::new();
        for i in 0..N {
            for (op, n, _) in run_of(i, row).map_or(&[][..], |r| &r.store[..]) {
                // Leave out the API server's own background requests (leases).
                if *n >= 10.0 && !ops.contains(&op.as_str()) {
                    ops.push(op);
                }
            }
        }
        ops.sort();
        for op in ops {
            let get = |i: usize| run_of(i, row).and_then(|r| r.store.iter().find(|(o, _, _)| o == op).map(|(_, n, secs)| (r.secs, *n, *secs)));
            let rate: [Option<f64>; N] = std::array::from_fn(|i| get(i).and_then(|(t, n, _)| (t > 0.0).then(|| n / t)));
            let mean: [Option<f64>; N] = std::array::from_fn(|i| get(i).map(|(_, n, secs)| secs / n * 1e6));
            let m = mean.map(|v| fmt_lat(v.map(|us| us as u64)));
            lines.push(format!(
                "| {} | {op} | {} | {} | {} | {} | {} | {} | {} |",
                row.split_whitespace().next().unwrap_or(""),
                fmt_rate(rate[OURS]), fmt_rate(rate[ETCD]), fmt_rate(rate[KINE]),
                m[OURS], m[ETCD], m[KINE], ratios(mean, true)
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    println!();
    println!("Store requests during these runs, as the API server timed them (etcd_request_duration_seconds), per operation:");
    println!();
    println!("| run | store request | ours /s | etcd /s | kine /s | ours mean | etcd mean | kine mean | mean etcd/ours | mean kine/ours |");
    println!("|---|---|{}", "---:|".repeat(8));
    for l in lines {
        println!("{l}");
    }
}

fn resource_table(runs: &[Option<StoreRun>; N]) {
    println!();
    println!("### Resources per store run");
    println!();
    println!("| | ours | etcd | kine | etcd/ours | kine/ours |");
    println!("|---|---:|---:|---:|---:|---:|");
    let get = |f: &dyn Fn(&StoreRun) -> f64| -> [Option<f64>; N] { std::array::from_fn(|i| runs[i].as_ref().map(f).filter(|v| *v > 0.0)) };
    let bytes = |what: &str, f: &dyn Fn(&StoreRun) -> f64| {
        let v = get(f);
        let c = v.map(|x| x.map_or("–".into(), |b| fmt_bytes(b as u64)));
        println!("| {what} | {} | {} | {} | {} |", c[OURS], c[ETCD], c[KINE], ratios(v, true));
    };
    let secs = |what: &str, f: &dyn Fn(&StoreRun) -> f64, unit_ms: bool| {
        let v = get(f);
        let c = v.map(|x| match x {
            None => "–".to_string(),
            Some(s) if unit_ms => format!("{:.0} ms", s * 1e3),
            Some(s) => format!("{s:.1} s"),
        });
        println!("| {what} | {} | {} | {} | {} |", c[OURS], c[ETCD], c[KINE], ratios(v, true));
    };
    bytes("kube-apiserver peak RSS (VmHWM)", &|r| r.apiserver.hwm as f64);
    bytes("store peak RSS (VmHWM)", &|r| r.store.hwm as f64);
    bytes("second kube-apiserver (no watch cache, workload 3) peak RSS", &|r| r.nocache.hwm as f64);
    secs("kube-apiserver CPU time", &|r| r.apiserver.cpu, false);
    secs("store CPU time", &|r| r.store.cpu, false);
    secs("second kube-apiserver CPU time", &|r| r.nocache.cpu, false);
    secs("load generator CPU time (this process)", &|r| r.client_cpu, false);
    let other: [String; N] = std::array::from_fn(|i| runs[i].as_ref().map_or("–".into(), |r| format!("{:.1} s", r.other_cpu)));
    println!(
        "| CPU time of everything else on the machine meanwhile (noise) | {} | {} | {} | | |",
        other[OURS], other[ETCD], other[KINE]
    );
    bytes("store data dir on disk, at the end", &|r| r.disk as f64);
    secs("store: start to first answer", &|r| r.store_ready.as_secs_f64(), true);
    secs("kube-apiserver: start to /readyz ok", &|r| r.api_ready.as_secs_f64(), false);
    secs("its workloads took", &|r| r.secs, false);
    println!();
    println!("CPU time: user + system during that store's own turns (the three stores and their API servers stay up");
    println!("through the whole benchmark; the second API server only through that store's workload 3). The load");
    println!("generator shares the machine's two cores with them; \"everything else\" is the machine's busy time during");
    println!("the store's turns minus this benchmark's processes (other work on a shared machine: the noise).");
}

fn report(cfg: &Config, k8s_version: &str, runs: &[Option<StoreRun>; N], elapsed: Duration) {
    let sh = |cmd: &str| {
        Command::new("sh").arg("-c").arg(cmd).output().ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mut versions = sh(&format!("{} --version 2>/dev/null | head -1", cfg.etcd_bin.display()));
    if let Some(k) = cfg.kine_bin.as_ref().filter(|_| cfg.stores.contains(&KINE)) {
        versions += &format!(", {}", sh(&format!("{} --version 2>/dev/null | head -1", k.display())));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = sh("cut -d' ' -f1-3 /proc/loadavg");
    println!();
    println!("## kube-apiserver on k8s datastore vs etcd vs kine");
    println!();
    println!(
        "kube-apiserver {k8s_version} (payload), {cores} cores, BENCH_SCALE={}, {versions}; each workload on the stores in turn ({}), {:.0} s in all; load average at the end {load}.",
        cfg.scale,
        cfg.stores.iter().map(|&i| NAMES[i]).collect::<Vec<_>>().join(", "),
        elapsed.as_secs_f64()
    );
    println!("Every ratio is oriented so that above 1 means ours does better: ops/s ours/etcd, latency etcd/ours.");
    println!("Latency is per API call as the client sees it (kube-rs, HTTP/1.1, TLS); \"update incl. retries\" and");
    println!("\"whole list\" span several calls; event delivery is the time from sending a write to a watcher seeing its event.");
    for (num, label) in WORKLOADS {
        workload_table(label, num, runs);
    }
    resource_table(runs);
}

// ---------------------------------------------------------------------------

const DIR_PREFIX: &str = "k8s-api-bench-";

/// Removes directories left by a benchmark that was killed outright.
fn remove_stale_dirs(bench_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(bench_dir) else { return };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(e.path().join("bench.pid")) else { continue };
        if !Path::new(&format!("/proc/{}", pid.trim())).exists() {
            eprintln!("removing {} (left by a killed benchmark, pid {})", e.path().display(), pid.trim());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Starts every store with its API server, then runs each workload on each
/// of them in turn (etcd, kine, ours by default) before the next workload,
/// so all three see the same history and the same conditions on the
/// machine, as closely as one after the other allows.
async fn run_all(cfg: &Config, root: &Path, bin: &Path, k8s_version: &str) -> Result<()> {
    let pki = Pki::new(&root.join("pki"))?;
    let mut runs: [Option<StoreRun>; N] = Default::default();
    let t = Instant::now();
    let mut stacks: Vec<Stack> = Vec::new();
    for &idx in &cfg.stores {
        // In this (main) thread: see Proc::start.
        match Stack::start(cfg, idx, root, bin, &pki).await {
            Ok(s) => stacks.push(s),
            Err(e) => {
                eprintln!("[{}] failed to start: {}", NAMES[idx], describe(&e));
                runs[idx] = Some(failed_run(cfg, &format!("did not start: {}", describe(&e))));
            }
        }
    }
    for (num, label) in WORKLOADS {
        if !cfg.wants(num) {
            continue;
        }
        for k in 0..stacks.len() {
            let name = NAMES[stacks[k].idx];
            if let Some(why) = stacks[k].failed.clone() {
                stacks[k].run.workloads.insert(num, Err(why));
                continue;
            }
            let all_before: f64 = stacks.iter().map(Stack::cpu).sum();
            let (busy_before, client_before) = (machine_busy_seconds(), self_cpu_seconds());
            let (store_before, api_before, nocache_before) =
                (stacks[k].store.cpu_seconds(), stacks[k].api.proc.cpu_seconds(), stacks[k].run.nocache.cpu);
            let t = Instant::now();
            eprint!("[{name}] {label} ... ");
            let r = stacks[k].workload(cfg, num, bin, &pki).await;
            eprintln!("{:.1} s", t.elapsed().as_secs_f64());
            if let Err(e) = &r {
                eprintln!("[{name}] {label} failed: {}", describe(e));
            }
            let all_after: f64 = stacks.iter().map(Stack::cpu).sum();
            let s = &mut stacks[k];
            let client = self_cpu_seconds() - client_before;
            let nocache = s.run.nocache.cpu - nocache_before;
            s.run.secs += t.elapsed().as_secs_f64();
            s.run.client_cpu += client;
            s.run.store.cpu += s.store.cpu_seconds() - store_before;
            s.run.apiserver.cpu += s.api.proc.cpu_seconds() - api_before;
            s.run.other_cpu += (machine_busy_seconds() - busy_before - client - (all_after - all_before) - nocache).max(0.0);
            s.run.workloads.insert(num, r.map_err(|e| describe(&e)));
            // The store or the API server exiting ends this store's run.
            if let Err(e) = s.store.check_alive().and_then(|()| s.api.proc.check_alive()) {
                eprintln!("[{name}] {}", describe(&e));
                s.failed = Some(format!("stopped earlier: {}", describe(&e)));
            }
        }
    }
    for mut s in stacks {
        s.run.store.hwm = s.store.status_bytes("VmHWM");
        s.run.apiserver.hwm = s.api.proc.status_bytes("VmHWM");
        let (idx, data_dir) = (s.idx, s.data_dir.clone());
        let mut run = std::mem::take(&mut s.run);
        drop(s);
        run.disk = disk_usage(&data_dir);
        runs[idx] = Some(run);
    }
    report(cfg, k8s_version, &runs, t.elapsed());
    Ok(())
}

fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    now_ns();
    std::fs::create_dir_all(&cfg.bench_dir).with_context(|| format!("cannot create BENCH_DIR {}", cfg.bench_dir.display()))?;
    remove_stale_dirs(&cfg.bench_dir);
    let (bin, k8s_version) = apiserver_binary(&cfg)?;
    let root = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir_in(&cfg.bench_dir)?;
    std::fs::write(root.path().join("bench.pid"), std::process::id().to_string())?;
    eprintln!("kube-apiserver {k8s_version} from {}, working under {}", bin.display(), root.path().display());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run_all(&cfg, root.path(), &bin, &k8s_version) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(rt);
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", root.keep().display());
    } else {
        drop(root);
    }
    result
}

//! `cargo bench --bench datastore`: `k8s datastore` (SQLite) against real
//! etcd and against kine (k3s's etcd-API shim, on its default SQLite
//! backend), side by side on the same disk, under the same workloads.
//!
//! The three servers start fresh in temporary directories under `BENCH_DIR`
//! (default /var/tmp), listen on loopback only, and are killed when the
//! benchmark ends, however it ends (kill on drop, and PR_SET_PDEATHSIG in
//! case this process itself is killed). A workload kine does not implement
//! (or answers wrongly) shows "not supported by kine: <error>" in its row
//! instead of failing the benchmark. See benches/README.md.
//!
//! Environment:
//! - `BENCH_DIR`    where the data directories go (default /var/tmp)
//! - `BENCH_SCALE`  multiplies operation counts (default 1; 0.1 for a quick run)
//! - `K8S_BIN`      the `k8s` binary (default: the one cargo just built,
//!   target/release/k8s)
//! - `ETCD_BIN`     the etcd binary (default `etcd` from PATH)
//! - `KINE_BIN`     the kine binary (default: what benches/kine/build.sh
//!   builds, or finds in its cache, and prints)
//! - `BENCH_KEEP`   set: keep the data directories and server logs
//! - `K8S_LOG`      passed to `k8s datastore` (default warn)
//! - `BENCH_BG_PUTS` puts/s of workload 2c's background writer (default
//!   200; 0: none, so every page of a list is at the newest revision)
//! - `BENCH_ONLY`   comma-separated workload numbers to run, e.g. `1,4`
//!   (workload 2 and 3 need the keys workload 1 writes; 2 runs 1 first)

mod common;

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use common::{self_cpu_seconds, start_store, Binaries, Proc, ETCD, KINE, N, NAMES, OURS, RUN_ORDER};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, LeaseClient,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
};

// ---------------------------------------------------------------------------
// Configuration

struct Config {
    bench_dir: PathBuf,
    scale: f64,
    k8s_bin: PathBuf,
    etcd_bin: PathBuf,
    kine_bin: PathBuf,
    /// Puts per second of 2c's background writer; 0: none.
    bg_puts: u32,
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
        let k8s_bin = std::env::var_os("K8S_BIN").map(PathBuf::from).unwrap_or_else(|| {
            option_env!("CARGO_BIN_EXE_k8s")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/k8s"))
        });
        let bg_puts = match std::env::var("BENCH_BG_PUTS") {
            Ok(s) => s.parse::<u32>().with_context(|| format!("BENCH_BG_PUTS={s} is not a number of puts per second"))?,
            Err(_) => 200,
        };
        let only = std::env::var("BENCH_ONLY").ok().map(|s| {
            s.split(',').filter_map(|p| p.trim().parse::<u32>().ok()).collect::<Vec<_>>()
        });
        Ok(Config {
            bench_dir: std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| "/var/tmp".into()),
            scale,
            k8s_bin,
            etcd_bin: std::env::var_os("ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| "etcd".into()),
            kine_bin: match std::env::var_os("KINE_BIN") {
                Some(p) => PathBuf::from(p),
                None => build_kine()?,
            },
            bg_puts,
            only,
        })
    }

    /// An operation count scaled by BENCH_SCALE, at least `min`.
    fn n(&self, base: u64, min: u64) -> u64 {
        ((base as f64 * self.scale).round() as u64).max(min)
    }

    fn wants(&self, w: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&w) || (w == 1 && (o.contains(&2) || o.contains(&3))))
    }
}

/// Runs benches/kine/build.sh, which pins kine's version and caches the
/// binary (a second run only prints its path): the path is its last line.
fn build_kine() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kine/build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({}); set KINE_BIN to a kine binary instead", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or_default().trim();
    if path.is_empty() {
        bail!("{} printed no path", script.display());
    }
    Ok(PathBuf::from(path))
}

/// Keys in the put/range workloads: 10k at scale 1, a multiple of 100.
fn kv_keys(cfg: &Config) -> u64 {
    (cfg.n(10_000, 200) / 100 * 100).min(99_900)
}

// ---------------------------------------------------------------------------
// The servers

/// A store under test: its process, client URL and data dir.
struct Server {
    proc: Proc,
    endpoint: String,
    data_dir: PathBuf,
    ready_after: Duration,
}

impl std::ops::Deref for Server {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Server {
    /// Store `idx` fresh in `root/<its name>`.
    fn start(cfg: &Config, idx: usize, root: &Path) -> Result<Server> {
        let bins = Binaries { k8s: &cfg.k8s_bin, etcd: &cfg.etcd_bin, kine: Some(&cfg.kine_bin) };
        let (proc, endpoint, data_dir) = start_store(&bins, idx, NAMES[idx], &root.join(NAMES[idx]))?;
        Ok(Server { proc, endpoint, data_dir, ready_after: Duration::ZERO })
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            let attempt = async {
                let mut c = Client::connect([&self.endpoint], Some(opts())).await?;
                c.get("/bench/ready", None).await?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(())) => {
                    self.ready_after = self.spawned.elapsed();
                    return Ok(());
                }
                _ if Instant::now() > deadline => {
                    bail!("{} did not answer on {} within 30s; last log lines:\n{}", self.name, self.endpoint, self.log_tail())
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// (allocated bytes, apparent bytes) of everything under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else { return total };
    for e in entries.flatten() {
        let Ok(md) = e.path().symlink_metadata() else { continue };
        if md.is_dir() {
            let (a, b) = disk_usage(&e.path());
            total.0 += a;
            total.1 += b;
        } else {
            total.0 += md.blocks() * 512;
            total.1 += md.len();
        }
    }
    total
}

fn opts() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(5))
}

/// `n` independent clients: each its own HTTP/2 connection.
async fn connect(endpoint: &str, n: usize) -> Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect([endpoint], Some(opts())).await?);
    }
    Ok(clients)
}

fn kv(c: &Client) -> KvClient {
    c.kv_client().max_decoding_message_size(256 << 20)
}

// ---------------------------------------------------------------------------
// Measuring

/// What one workload measured on one server.
#[derive(Default, Clone)]
struct Stat {
    ops: u64,
    secs: f64,
    /// Latencies in microseconds.
    lat: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    notes: Vec<String>,
    /// Requested operations, when the time cap cut the run short.
    capped: Option<u64>,
}

impl Stat {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 { self.ops as f64 / self.secs } else { 0.0 }
    }

    /// A percentile of the latencies, which `combine` has sorted.
    fn pct(&self, p: f64) -> Option<u64> {
        if self.lat.is_empty() {
            return None;
        }
        let idx = ((p * self.lat.len() as f64).ceil() as usize).clamp(1, self.lat.len()) - 1;
        Some(self.lat[idx])
    }

    fn failed(e: &anyhow::Error) -> Stat {
        Stat { errors: 1, first_error: Some(describe(e)), ..Default::default() }
    }

    /// Why server `idx`'s figures are left out of a row: kine answered with
    /// an error (a request it does not implement, or an answer the
    /// workload's check rejected), so its figures measure something else.
    fn unsupported(&self, idx: usize) -> Option<String> {
        if idx != KINE || self.errors == 0 {
            return None;
        }
        let why = self.first_error.as_ref().or(self.notes.last()).map_or("", |w| w.as_str());
        // The first line: an exited server's log follows on the next ones.
        let why = why.lines().next().unwrap_or_default();
        let attempted = self.ops + self.errors;
        Some(format!("not supported by kine: {why} ({} of {attempted} failed)", self.errors))
    }
}

/// An error on one line: a gRPC status as its code and message (its Display
/// adds the metadata).
fn describe(e: &anyhow::Error) -> String {
    match e.downcast_ref::<etcd_client::Error>() {
        Some(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        _ => format!("{e:#}"),
    }
}

/// Operations handed out to workers until the count or the time runs out.
struct Budget {
    next: AtomicU64,
    total: u64,
    deadline: Instant,
}

impl Budget {
    fn take(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

/// Runs `op` for operations 0..total over one worker per state, measuring
/// each call (or the duration it returns).
async fn drive<S, F, Fut>(states: Vec<S>, total: u64, limit: Duration, op: F) -> Stat
where
    S: Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (S, Result<Option<Duration>>)> + Send + 'static,
{
    let budget = Arc::new(Budget { next: AtomicU64::new(0), total, deadline: Instant::now() + limit });
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for state in states {
        let (budget, op) = (budget.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut state = state;
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            while let Some(i) = budget.take() {
                let t = Instant::now();
                let (s, r) = op(state, i).await;
                state = s;
                match r {
                    Ok(d) => lat.push(d.unwrap_or_else(|| t.elapsed()).as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| describe(&e));
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut stat = Stat::default();
    for t in tasks {
        let (lat, errors, first_error) = t.await.expect("a benchmark worker panicked");
        stat.lat.extend(lat);
        stat.errors += errors;
        if stat.first_error.is_none() {
            stat.first_error = first_error;
        }
    }
    stat.secs = start.elapsed().as_secs_f64();
    stat.ops = stat.lat.len() as u64;
    if stat.ops + stat.errors < total {
        stat.capped = Some(total);
    }
    stat
}

/// Deterministic pseudo-random numbers (splitmix64), so both servers get
/// the same sequence.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn value(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64).map(|i| b'a' + (mix(seed ^ i) % 26) as u8).collect()
}

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the benchmark started: a timestamp tasks can share.
fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn us(ns: u64) -> u64 {
    ns / 1_000
}

// ---------------------------------------------------------------------------
// Workloads. Each returns named rows; the same names for both servers.

type Rows = Vec<(String, Stat)>;

const WORKERS: usize = 16;

fn kv_key(i: u64) -> String {
    format!("/bench/kv/{i:05}")
}

/// Workload 1: 256-byte puts over the key space from 16 clients.
async fn w_put(cfg: &Config, ep: &str) -> Result<Rows> {
    let keys = kv_keys(cfg);
    let total = cfg.n(40_000, keys);
    let clients = connect(ep, WORKERS).await?;
    let val = Arc::new(value(256, 1));
    let states: Vec<KvClient> = clients.iter().map(kv).collect();
    let stat = drive(states, total, Duration::from_secs(60), move |mut kv, i| {
        let val = val.clone();
        async move {
            let r = kv.put(kv_key(i % keys), val.to_vec(), None).await;
            (kv, r.map(|_| None).map_err(Into::into))
        }
    })
    .await;
    // One client, one put at a time: the commit (fsync) latency itself.
    let val = Arc::new(value(256, 6));
    let seq = drive(vec![kv(&clients[0])], cfg.n(1_000, 100), Duration::from_secs(15), move |mut kv, i| {
        let val = val.clone();
        async move {
            let r = kv.put(kv_key(i % keys), val.to_vec(), None).await;
            (kv, r.map(|_| None).map_err(Into::into))
        }
    })
    .await;
    Ok(vec![
        (format!("1a. put 256 B, {keys} keys, {WORKERS} clients"), stat),
        ("1b. put 256 B, 1 client, sequential".to_string(), seq),
    ])
}

/// Workload 2: Ranges over the keys workload 1 wrote: random 100-key prefixes from
/// 16 readers, and whole-prefix lists from 4.
async fn w_range(cfg: &Config, ep: &str) -> Result<Rows> {
    let keys = kv_keys(cfg);
    let clients = connect(ep, WORKERS).await?;
    let prefixes = keys / 100;
    let states: Vec<KvClient> = clients.iter().map(kv).collect();
    let small = drive(states, cfg.n(20_000, 500), Duration::from_secs(20), move |mut kv, i| async move {
        let p = mix(i ^ 0xABCD) % prefixes;
        let r = kv.get(format!("/bench/kv/{p:03}"), Some(GetOptions::new().with_prefix())).await;
        let r = match r {
            Ok(resp) if resp.kvs().len() == 100 => Ok(None),
            Ok(resp) => Err(anyhow!("prefix {p:03}: expected 100 keys, got {}", resp.kvs().len())),
            Err(e) => Err(e.into()),
        };
        (kv, r)
    })
    .await;
    let states: Vec<KvClient> = clients.iter().take(4).map(kv).collect();
    let full = drive(states, cfg.n(80, 8), Duration::from_secs(20), move |mut kv, _| async move {
        let r = kv.get("/bench/kv/", Some(GetOptions::new().with_prefix())).await;
        let r = match r {
            Ok(resp) if resp.kvs().len() as u64 == keys => Ok(None),
            Ok(resp) => Err(anyhow!("list: expected {keys} keys, got {}", resp.kvs().len())),
            Err(e) => Err(e.into()),
        };
        (kv, r)
    })
    .await;
    let paged = w_paged(cfg, ep, &clients).await?;
    Ok(vec![
        (format!("2a. range 100-key prefix, {WORKERS} readers"), small),
        (format!("2b. list all {keys} keys, 4 readers"), full),
        (format!("2c. paginated list, pages of {PAGE} keys, {WORKERS} readers, {} puts/s elsewhere", cfg.bg_puts), paged),
    ])
}

/// 2c: paginated lists from 16 readers, with a writer putting into
/// /bench/other/ meanwhile (as the API server's other clients write while a
/// LIST pages), so every page after a list's first is a range at a past
/// revision.
async fn w_paged(cfg: &Config, ep: &str, clients: &[Client]) -> Result<Stat> {
    let writer_conn = connect(ep, 1).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(background_writer(kv(&writer_conn[0]), cfg.bg_puts, stop_rx));
    let counts = Arc::new(PageCounts::default());
    let c2 = counts.clone();
    let states: Vec<(KvClient, Option<Cursor>)> = clients.iter().map(|c| (kv(c), None)).collect();
    let mut stat = drive(states, cfg.n(20_000, 500), Duration::from_secs(20), move |(kv, cursor), _| {
        page(kv, cursor, c2.clone())
    })
    .await;
    let _ = stop_tx.send(true);
    let puts = writer.await?;
    stat.notes.push(format!(
        "{} background puts ({:.0}/s); {} of {} later pages at a past revision",
        puts.ok,
        puts.ok as f64 / stat.secs.max(1e-3),
        counts.behind.load(Ordering::Relaxed),
        counts.later.load(Ordering::Relaxed),
    ));
    // A failing writer leaves the pages at the newest revision: not this workload.
    stat.errors += puts.errors;
    stat.first_error = stat.first_error.or(puts.first_error.map(|e| format!("background writer: {e}")));
    Ok(stat)
}

/// Puts 256 B values over 1000 keys of /bench/other/ at `per_sec` (none at
/// 0) until told to stop. Puts do not wait for the one before (up to 16 in
/// flight), so a put slowed by the readers does not slow the rate: every
/// store that keeps up gets the same writes.
async fn background_writer(kv: KvClient, per_sec: u32, mut stop: tokio::sync::watch::Receiver<bool>) -> Tally {
    let mut tally = Tally::default();
    if per_sec == 0 {
        return tally;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec);
    // A store that cannot keep up gets fewer puts, not a burst to catch up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let val = value(256, 7);
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0u64.. {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        while let Some(r) = inflight.try_join_next() {
            tally.add(r);
        }
        if inflight.len() < 16 {
            let (mut kv, val) = (kv.clone(), val.clone());
            inflight.spawn(async move { kv.put(format!("/bench/other/{:04}", i % 1000), val, None).await.map(drop) });
        }
    }
    while let Some(r) = inflight.join_next().await {
        tally.add(r);
    }
    tally
}

/// Outcomes of the background writer's puts.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, r: Result<Result<(), etcd_client::Error>, tokio::task::JoinError>) {
        match r.map_err(anyhow::Error::from).and_then(|r| r.map_err(anyhow::Error::from)) {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| describe(&e));
            }
        }
    }
}

/// Pages after a list's first, and those of them whose answer's header is
/// ahead of the revision they asked for (the store moved on meanwhile).
#[derive(Default)]
struct PageCounts {
    later: AtomicU64,
    behind: AtomicU64,
}

/// kube-apiserver's paginated LIST (and `kubectl get`'s chunks): pages of
/// this many keys.
const PAGE: i64 = 500;

/// Where a paginated list goes on: after this key, at this revision.
type Cursor = (Vec<u8>, i64);

/// One page of a paginated list over the keys workload 1 wrote: the first
/// at the newest revision, each next one after the previous page's last key
/// at the first page's revision, as the API server asks them.
async fn page(
    mut kv: KvClient,
    cursor: Option<Cursor>,
    counts: Arc<PageCounts>,
) -> ((KvClient, Option<Cursor>), Result<Option<Duration>>) {
    let opts = GetOptions::new().with_range("/bench/kv0").with_limit(PAGE);
    let (start, opts) = match &cursor {
        None => (b"/bench/kv/".to_vec(), opts),
        Some((after, rev)) => (after.clone(), opts.with_revision(*rev)),
    };
    let resp = match kv.get(start, Some(opts)).await {
        Ok(resp) => resp,
        Err(e) => return ((kv, None), Err(e.into())),
    };
    if resp.more() && resp.kvs().len() as i64 != PAGE {
        return ((kv, None), Err(anyhow!("a page with more after it has {} keys, not {PAGE}", resp.kvs().len())));
    }
    let head = resp.header().map_or(0, |h| h.revision());
    if let Some((_, rev)) = &cursor {
        counts.later.fetch_add(1, Ordering::Relaxed);
        if head > *rev {
            counts.behind.fetch_add(1, Ordering::Relaxed);
        }
    }
    let rev = cursor.map_or(head, |(_, rev)| rev);
    let next = match resp.kvs().last() {
        Some(last) if resp.more() => Some(([last.key(), &[0]].concat(), rev)),
        _ => None,
    };
    ((kv, next), Ok(None))
}

/// Workload 3: kube-apiserver's GuaranteedUpdate: Txn(mod_revision == known) then
/// Put, else Get; on conflict retry with what the Get returned. The known
/// revisions are shared, like the apiserver's watch cache.
async fn w_cas(cfg: &Config, ep: &str) -> Result<Rows> {
    const KEYS: u64 = 1_000;
    let key = |i: u64| format!("/bench/cas/{i:04}");
    let clients = connect(ep, WORKERS).await?;
    // Seed the keys (not measured).
    let seed_val = Arc::new(value(256, 2));
    let seeded = drive(clients.iter().map(kv).collect(), KEYS, Duration::from_secs(60), move |mut kv, i| {
        let v = seed_val.clone();
        async move {
            let r = kv.put(format!("/bench/cas/{i:04}"), v.to_vec(), None).await;
            (kv, r.map(|_| None).map_err(Into::into))
        }
    })
    .await;
    if seeded.ops != KEYS {
        bail!("seeding the CAS keys: {:?}", seeded.first_error);
    }
    let known: Arc<Vec<AtomicI64>> = Arc::new((0..KEYS).map(|_| AtomicI64::new(0)).collect());
    let resp = kv(&clients[0]).get("/bench/cas/", Some(GetOptions::new().with_prefix())).await?;
    for kv in resp.kvs() {
        let i: usize = std::str::from_utf8(&kv.key()[11..])?.parse()?;
        known[i].store(kv.mod_revision(), Ordering::Relaxed);
    }
    let conflicts = Arc::new(AtomicU64::new(0));
    let val = Arc::new(value(256, 3));
    let (k2, c2) = (known.clone(), conflicts.clone());
    let stat = drive(clients.iter().map(kv).collect(), cfg.n(20_000, 500), Duration::from_secs(40), move |mut kv, i| {
        let (known, conflicts, val) = (k2.clone(), c2.clone(), val.clone());
        let k = mix(i ^ 0x5EED) % KEYS;
        let name = key(k);
        async move {
            let r = async {
                for _ in 0..1_000 {
                    let rev = known[k as usize].load(Ordering::Relaxed);
                    let txn = Txn::new()
                        .when(vec![Compare::mod_revision(name.clone(), CompareOp::Equal, rev)])
                        .and_then(vec![TxnOp::put(name.clone(), val.to_vec(), None)])
                        .or_else(vec![TxnOp::get(name.clone(), None)]);
                    let resp = kv.txn(txn).await?;
                    if resp.succeeded() {
                        let new = resp.header().map_or(0, |h| h.revision());
                        known[k as usize].fetch_max(new, Ordering::Relaxed);
                        return Ok(None);
                    }
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    let current = resp.op_responses().into_iter().find_map(|r| match r {
                        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
                        _ => None,
                    });
                    let Some(current) = current else { bail!("{name}: conflict but the key is gone") };
                    known[k as usize].fetch_max(current, Ordering::Relaxed);
                }
                bail!("{name}: 1000 conflicts in a row")
            }
            .await;
            (kv, r)
        }
    })
    .await;
    let mut stat = stat;
    stat.notes.push(format!("{} conflicts retried", conflicts.load(Ordering::Relaxed)));
    Ok(vec![(format!("3. CAS update (Txn), 1k keys, {WORKERS} clients"), stat)])
}

/// Workload 4: 100 watchers on one prefix over 4 connections; a writer puts N new
/// keys, 8 in flight. Every event's delivery time at every watcher is
/// compared with the time its put was sent and acknowledged.
async fn w_watch(cfg: &Config, ep: &str) -> Result<Rows> {
    const WATCHERS: usize = 100;
    const WRITERS: usize = 8;
    let prefix = "/bench/watch/";
    let n = cfg.n(4_000, 100);
    let conns = connect(ep, 4).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    let mut tasks = Vec::new();
    for w in 0..WATCHERS {
        let mut c = conns[w % conns.len()].clone();
        let (watcher, mut stream) = c.watch(prefix, Some(WatchOptions::new().with_prefix())).await?;
        watchers.push(watcher);
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut got: Vec<(u32, u64)> = Vec::with_capacity(n as usize);
            let mut error = None;
            while (got.len() as u64) < n {
                tokio::select! {
                    m = stream.message() => match m {
                        Ok(Some(resp)) => {
                            let t = now_ns();
                            for ev in resp.events() {
                                let Some(kv) = ev.kv() else { continue };
                                let seq = std::str::from_utf8(&kv.key()[prefix.len()..]).ok().and_then(|s| s.parse().ok());
                                if let Some(seq) = seq {
                                    got.push((seq, t));
                                }
                            }
                            if resp.canceled() {
                                error = Some(format!("watch canceled: {}", resp.cancel_reason()));
                                break;
                            }
                        }
                        Ok(None) => { error = Some("watch stream ended".to_string()); break }
                        Err(e) => { error = Some(e.to_string()); break }
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            (got, error)
        }));
    }

    let send: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let ack: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let val = Arc::new(value(256, 4));
    let (s2, a2) = (send.clone(), ack.clone());
    let first_send = now_ns();
    let writer_conn = connect(ep, 1).await?;
    let writer = drive(
        (0..WRITERS).map(|_| kv(&writer_conn[0])).collect(),
        n,
        Duration::from_secs(40),
        move |mut kv, i| {
            let (send, ack, val) = (s2.clone(), a2.clone(), val.clone());
            async move {
                send[i as usize].store(now_ns(), Ordering::Relaxed);
                let r = kv.put(format!("/bench/watch/{i:07}"), val.to_vec(), None).await;
                ack[i as usize].store(now_ns(), Ordering::Relaxed);
                (kv, r.map(|_| None).map_err(Into::into))
            }
        },
    )
    .await;
    let written = writer.ops;

    // Give watchers a bounded grace period to drain after the last ack.
    let grace = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut results = Vec::new();
    for mut t in tasks {
        let r = tokio::select! {
            r = &mut t => r?,
            _ = tokio::time::sleep_until(grace) => {
                let _ = stop_tx.send(true);
                t.await?
            }
        };
        results.push(r);
    }
    let _ = stop_tx.send(true);
    drop(watchers);

    let mut from_send = Stat::default();
    let mut from_ack = Stat::default();
    let (mut received, mut dups, mut early, mut last) = (0u64, 0u64, 0u64, first_send);
    let mut errors = Vec::new();
    for (got, error) in &results {
        if let Some(e) = error {
            errors.push(e.clone());
        }
        let mut seen = vec![false; n as usize];
        for &(seq, t) in got {
            let i = seq as usize;
            if i >= seen.len() || seen[i] {
                dups += 1;
                continue;
            }
            seen[i] = true;
            received += 1;
            last = last.max(t);
            let (s, a) = (send[i].load(Ordering::Relaxed), ack[i].load(Ordering::Relaxed));
            from_send.lat.push(us(t.saturating_sub(s)));
            if t < a {
                early += 1;
            }
            from_ack.lat.push(us(t.saturating_sub(a)));
        }
    }
    let expected = written * WATCHERS as u64;
    from_send.ops = received;
    from_send.secs = (last - first_send) as f64 / 1e9;
    from_send.errors = expected.saturating_sub(received) + dups + writer.errors;
    from_send.first_error = errors.first().cloned().or(writer.first_error.clone());
    if expected > received {
        from_send.notes.push(format!("{} of {expected} events missing", expected - received));
    }
    if dups > 0 {
        from_send.notes.push(format!("{dups} duplicate events"));
    }
    from_ack.ops = written;
    from_ack.secs = writer.secs;
    from_ack.capped = writer.capped;
    from_ack.notes.push(format!("{early} events delivered before the put's ack"));
    Ok(vec![
        (format!("4a. watch: {WATCHERS} watchers, events/s, send→delivery"), from_send),
        (format!("4b. watch: writer puts/s ({WRITERS} in flight), ack→delivery"), from_ack),
    ])
}

/// Workload 5: Lease churn: grant a 2 s lease and attach a key to it, from 16
/// clients; then let them all expire and time the keys' deletions (seen
/// through a watch) against each lease's deadline.
async fn w_lease(cfg: &Config, ep: &str) -> Result<Rows> {
    let prefix = "/bench/lease/";
    let n = cfg.n(2_000, 100);
    let clients = connect(ep, WORKERS).await?;
    let mut wc = clients[0].clone();
    let (watcher, mut stream) = wc
        .watch(prefix, Some(WatchOptions::new().with_prefix().with_filters([WatchFilterType::NoPut])))
        .await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let deletions = tokio::spawn(async move {
        let mut got: Vec<(u32, u64)> = Vec::with_capacity(n as usize);
        while (got.len() as u64) < n {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(resp)) => {
                        let t = now_ns();
                        for ev in resp.events() {
                            if ev.event_type() != EventType::Delete { continue }
                            let Some(kv) = ev.kv() else { continue };
                            if let Some(seq) = std::str::from_utf8(&kv.key()[prefix.len()..]).ok().and_then(|s| s.parse().ok()) {
                                got.push((seq, t));
                            }
                        }
                    }
                    _ => break,
                },
                _ = stop_rx.wait_for(|s| *s) => break,
            }
        }
        got
    });

    // Deadline of each lease as the client sees it: grant ack + granted TTL.
    let due: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let d2 = due.clone();
    let val = Arc::new(value(256, 5));
    let states: Vec<(LeaseClient, KvClient)> = clients.iter().map(|c| (c.lease_client(), kv(c))).collect();
    let grants = drive(states, n, Duration::from_secs(30), move |(mut lc, mut kv), i| {
        let (due, val) = (d2.clone(), val.clone());
        async move {
            let r = async {
                let t = Instant::now();
                let lease = lc.grant(2, None).await?;
                let took = t.elapsed();
                due[i as usize].store(now_ns() + lease.ttl() as u64 * 1_000_000_000, Ordering::Relaxed);
                kv.put(format!("/bench/lease/{i:06}"), val.to_vec(), Some(PutOptions::new().with_lease(lease.id()))).await?;
                Ok(Some(took))
            }
            .await;
            ((lc, kv), r)
        }
    })
    .await;
    let granted = grants.ops;
    let last_due = due.iter().map(|d| d.load(Ordering::Relaxed)).max().unwrap_or(0);

    // Wait for every attached key to be deleted, at most 30 s past the last deadline.
    let wait_until = Duration::from_nanos(last_due.saturating_sub(now_ns())) + Duration::from_secs(30);
    let got = {
        let mut deletions = deletions;
        tokio::select! {
            r = &mut deletions => r?,
            _ = tokio::time::sleep(wait_until) => {
                let _ = stop_tx.send(true);
                deletions.await?
            }
        }
    };
    let _ = stop_tx.send(true);
    drop(watcher);
    let left = kv(&clients[0])
        .get(prefix, Some(GetOptions::new().with_prefix().with_count_only()))
        .await?
        .count();

    let mut lag = Stat::default();
    let (mut first_del, mut last_del, mut early) = (u64::MAX, 0u64, 0u64);
    for &(seq, t) in &got {
        let d = due[seq as usize].load(Ordering::Relaxed);
        if d == 0 {
            continue; // a lease whose grant failed
        }
        if t < d {
            early += 1;
        }
        lag.lat.push(us(t.saturating_sub(d)));
        first_del = first_del.min(t);
        last_del = last_del.max(t);
    }
    lag.ops = lag.lat.len() as u64;
    lag.secs = if last_del > first_del { (last_del - first_del) as f64 / 1e9 } else { 0.0 };
    if lag.ops > 0 {
        lag.notes.push(format!(
            "all gone {:.2} s after the last deadline",
            last_del.saturating_sub(last_due) as f64 / 1e9
        ));
    }
    if early > 0 {
        lag.notes.push(format!("{early} deleted before the client-side deadline"));
    }
    if lag.ops < granted || left > 0 {
        lag.errors = granted.saturating_sub(lag.ops).max(left as u64);
        lag.notes.push(format!("{} of {granted} deletions not seen, {left} keys left", granted.saturating_sub(lag.ops)));
    }
    Ok(vec![
        ("5a. lease grant (TTL 2 s) + attach a key, 16 clients; latency = grant".to_string(), grants),
        ("5b. lease expiry: deletions/s, lag past deadline".to_string(), lag),
    ])
}

// ---------------------------------------------------------------------------
// Running and reporting

struct Row {
    name: String,
    stats: [Stat; N],
}

struct Cpu {
    workload: String,
    secs: [f64; N],
    /// Operations of the workload's first row (0 where left out).
    ops: [u64; N],
    /// VmRSS after the workload, bytes.
    rss: [u64; N],
    /// CPU seconds this benchmark process (the clients) used.
    client: [f64; N],
}

async fn workload(cfg: &Config, num: u32, ep: &str) -> Result<Rows> {
    match num {
        1 => w_put(cfg, ep).await,
        2 => w_range(cfg, ep).await,
        3 => w_cas(cfg, ep).await,
        4 => w_watch(cfg, ep).await,
        _ => w_lease(cfg, ep).await,
    }
}

/// Lines the servers' rows up by position (the workloads name them the same
/// for every server). A server whose workload failed gets its error in each
/// of the others' rows.
fn combine(label: &str, per: &[Result<Rows>; N]) -> Vec<Row> {
    let names: Vec<String> = per
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max_by_key(|rows| rows.len())
        .map(|rows| rows.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_else(|| vec![format!("{label} (failed)")]);
    let stat = |side: usize, i: usize| {
        let mut st = match &per[side] {
            Ok(rows) => rows.get(i).map(|(_, s)| s.clone()).unwrap_or_default(),
            Err(e) => Stat::failed(e),
        };
        st.lat.sort_unstable();
        st
    };
    names.into_iter().enumerate().map(|(i, name)| Row { name, stats: std::array::from_fn(|side| stat(side, i)) }).collect()
}

async fn run(cfg: &Config, servers: &mut [Server; N]) -> Result<()> {
    // All at once: each one's start time is its own, not the wait for the
    // ones before it.
    futures::future::try_join_all(servers.iter_mut().map(Server::wait_ready)).await?;
    let mut rows: Vec<Row> = Vec::new();
    let mut cpu: Vec<Cpu> = Vec::new();
    let workloads: [(u32, &str); 5] =
        [(1, "1. put"), (2, "2. range"), (3, "3. CAS"), (4, "4. watch"), (5, "5. lease")];
    let total = Instant::now();
    for (num, label) in workloads {
        if !cfg.wants(num) {
            continue;
        }
        let mut per: [Result<Rows>; N] = std::array::from_fn(|_| Ok(Vec::new()));
        let mut cpu_row = Cpu { workload: label.to_string(), secs: [0.0; N], ops: [0; N], rss: [0; N], client: [0.0; N] };
        for idx in RUN_ORDER {
            let s = &mut servers[idx];
            let ep = s.endpoint.clone();
            let before = s.cpu_seconds();
            let client_before = self_cpu_seconds();
            let t = Instant::now();
            eprint!("{label:<10} {:<5} ... ", s.name);
            let r = match s.check_alive() {
                Ok(()) => workload(cfg, num, &ep).await,
                Err(e) => Err(e),
            };
            cpu_row.secs[idx] = (s.cpu_seconds() - before).max(0.0);
            cpu_row.rss[idx] = s.status_bytes("VmRSS");
            cpu_row.client[idx] = self_cpu_seconds() - client_before;
            eprintln!("{:.1} s", t.elapsed().as_secs_f64());
            if let Err(e) = &r {
                eprintln!("  {label} on {} failed: {}", s.name, describe(e));
            }
            // ours or etcd exiting ends the benchmark; kine exiting fails
            // its remaining workloads (as not supported).
            if idx != KINE {
                s.check_alive()?;
            }
            per[idx] = r;
        }
        let new = combine(label, &per);
        cpu_row.ops = std::array::from_fn(|i| {
            new.first().map_or(0, |r| if r.stats[i].unsupported(i).is_some() { 0 } else { r.stats[i].ops })
        });
        rows.extend(new);
        cpu.push(cpu_row);
    }
    let elapsed = total.elapsed();
    report(cfg, servers, &rows, &cpu, elapsed);
    Ok(())
}

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
                format!("{ms:.0} ms")
            }
        }
    }
}

fn fmt_ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 { format!("{:.2}", a / b) } else { "–".into() }
}

/// ours/etcd and ours/kine of per-server figures, as two cells.
fn ratios(v: [f64; N]) -> String {
    format!("{} | {}", fmt_ratio(v[OURS], v[ETCD]), fmt_ratio(v[OURS], v[KINE]))
}

/// "–" for 0: a server that has exited.
fn fmt_bytes(b: u64) -> String {
    if b == 0 {
        return "–".into();
    }
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib >= 10.0 { format!("{mib:.0} MiB") } else { format!("{mib:.1} MiB") }
}

/// Text that fits in one markdown table cell: one line, at most 160 characters.
fn cell(text: &str) -> String {
    let text = text.replace('|', "\\|").replace('\n', " ");
    if text.chars().count() > 160 { format!("{}…", text.chars().take(160).collect::<String>()) } else { text }
}

/// `f` of each server's stat, or "–" where kine's figures are left out.
fn cols<T>(stats: &[Stat; N], f: impl Fn(&Stat) -> T) -> [Option<T>; N] {
    std::array::from_fn(|i| stats[i].unsupported(i).is_none().then(|| f(&stats[i])))
}

fn report(cfg: &Config, servers: &[Server; N], rows: &[Row], cpu: &[Cpu], elapsed: Duration) {
    let sh = |cmd: &str| {
        Command::new("sh").arg("-c").arg(cmd).output().ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let etcd_version = sh(&format!("{} --version 2>/dev/null | head -1", cfg.etcd_bin.display()));
    let kine_version = sh(&format!("{} --version 2>/dev/null | head -1", cfg.kine_bin.display()));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = sh(&format!("df -T {} | awk 'NR==2 {{print $2\" on \"$1}}'", cfg.bench_dir.display()));
    println!();
    println!("## k8s datastore vs etcd vs kine");
    println!();
    println!(
        "{cores} cores, data dirs in {} ({fs}), BENCH_SCALE={}, {etcd_version}, {kine_version} (SQLite, its defaults), workloads took {:.0} s.",
        cfg.bench_dir.display(), cfg.scale, elapsed.as_secs_f64()
    );
    println!("Ratios are ours/etcd and ours/kine: for ops/s above 1 means ours does more; for latency, CPU, memory,");
    println!("disk and start time below 1 means ours takes less.");
    println!();
    main_table(rows);
    cpu_table(cpu);
    resource_table(servers);
}

fn main_table(rows: &[Row]) {
    println!(
        "| workload | ours ops/s | etcd ops/s | kine ops/s | ops/s ours/etcd | ops/s ours/kine \
         | ours p50 | etcd p50 | kine p50 | p50 ours/etcd | p50 ours/kine \
         | ours p99 | etcd p99 | kine p99 | p99 ours/etcd | p99 ours/kine |"
    );
    println!("|---|{}", "---:|".repeat(15));
    let mut notes = Vec::new();
    for row in rows {
        let rate = cols(&row.stats, Stat::rate);
        let [p50, p99] = [0.50, 0.99].map(|p| cols(&row.stats, |s| s.pct(p)).map(Option::flatten));
        let rate_cells: [String; N] = std::array::from_fn(|i| match (rate[i], row.stats[i].unsupported(i)) {
            (Some(r), _) => format!("{r:.0}"),
            (None, why) => cell(&why.unwrap_or_default()),
        });
        let lat = |v: [Option<u64>; N]| {
            format!("{} | {} | {} | {}", fmt_lat(v[0]), fmt_lat(v[1]), fmt_lat(v[2]), ratios(v.map(|x| x.unwrap_or(0) as f64)))
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name, rate_cells[0], rate_cells[1], rate_cells[2],
            ratios(rate.map(|r| r.unwrap_or(0.0))), lat(p50), lat(p99),
        );
        notes.extend(row_notes(row));
    }
    if !notes.is_empty() {
        println!();
        for n in &notes {
            println!("{n}");
        }
    }
}

/// The notes under the main table for one row: what each server's stat
/// says besides its figures.
fn row_notes(row: &Row) -> Vec<String> {
    let short = row.name.split_whitespace().next().unwrap_or("");
    let mut notes = Vec::new();
    for (i, st) in row.stats.iter().enumerate() {
        let mut bits = st.notes.clone();
        if let Some(total) = st.capped {
            bits.push(format!("time cap hit: {} of {total} ops", st.ops));
        }
        // kine's error is in the row already.
        if st.errors > 0 && st.unsupported(i).is_none() {
            bits.push(format!("{} errors, first: {}", st.errors, st.first_error.as_deref().unwrap_or("?")));
        }
        if !bits.is_empty() {
            notes.push(format!("- {short} {}: {}", NAMES[i], bits.join("; ")));
        }
    }
    notes
}

fn cpu_table(cpu: &[Cpu]) {
    println!();
    println!(
        "| per workload | ours CPU s | etcd CPU s | kine CPU s | ours CPU µs/op | etcd CPU µs/op | kine CPU µs/op \
         | CPU/op ours/etcd | CPU/op ours/kine | ours RSS after | etcd RSS after | kine RSS after \
         | RSS ours/etcd | RSS ours/kine | client CPU s vs ours / etcd / kine |"
    );
    println!("|---|{}", "---:|".repeat(14));
    for c in cpu {
        let per_op: [f64; N] = std::array::from_fn(|i| if c.ops[i] > 0 { c.secs[i] * 1e6 / c.ops[i] as f64 } else { 0.0 });
        let us = |v: f64| if v > 0.0 { format!("{v:.0}") } else { "–".into() };
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} |",
            c.workload, c.secs[0], c.secs[1], c.secs[2], us(per_op[0]), us(per_op[1]), us(per_op[2]), ratios(per_op),
            fmt_bytes(c.rss[0]), fmt_bytes(c.rss[1]), fmt_bytes(c.rss[2]), ratios(c.rss.map(|b| b as f64)),
            c.client[0], c.client[1], c.client[2]
        );
    }
    println!();
    println!("CPU s: server user+system time during the workload; µs/op: that over the ops of the workload's first row");
    println!("(– where kine does not support it); client CPU: this benchmark process, which shares the machine's cores");
    println!("with the server under test.");
}

fn resource_table(servers: &[Server; N]) {
    println!();
    println!("| resources after the workloads | ours | etcd | kine | ours/etcd | ours/kine |");
    println!("|---|---:|---:|---:|---:|---:|");
    let bytes = |what: &str, v: [u64; N]| {
        let [a, b, c] = v.map(fmt_bytes);
        println!("| {what} | {a} | {b} | {c} | {} |", ratios(v.map(|x| x as f64)));
    };
    bytes("RSS (VmRSS)", servers.each_ref().map(|s| s.status_bytes("VmRSS")));
    bytes("peak RSS (VmHWM)", servers.each_ref().map(|s| s.status_bytes("VmHWM")));
    let du = servers.each_ref().map(|s| disk_usage(&s.data_dir));
    bytes("data dir, allocated on disk", du.map(|d| d.0));
    bytes("data dir, apparent size", du.map(|d| d.1));
    let cpu = servers.each_ref().map(|s| s.cpu_seconds());
    println!("| CPU time, whole run | {:.1} s | {:.1} s | {:.1} s | {} |", cpu[0], cpu[1], cpu[2], ratios(cpu));
    let ready = servers.each_ref().map(|s| s.ready_after.as_secs_f64());
    println!(
        "| start to first answer | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
        ready[0] * 1e3, ready[1] * 1e3, ready[2] * 1e3, ratios(ready)
    );
}

const DIR_PREFIX: &str = "k8s-datastore-bench-";

/// Removes directories left by a benchmark that was killed outright
/// (SIGKILL skips every cleanup; its servers died with it): those whose
/// bench.pid names a process that no longer exists.
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

fn main() -> Result<()> {
    let cfg = Config::from_env()?;
    now_ns();
    std::fs::create_dir_all(&cfg.bench_dir)
        .with_context(|| format!("cannot create BENCH_DIR {}", cfg.bench_dir.display()))?;
    remove_stale_dirs(&cfg.bench_dir);
    let root = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir_in(&cfg.bench_dir)?;
    std::fs::write(root.path().join("bench.pid"), std::process::id().to_string())?;
    // Spawned here, on the main thread, which outlives every workload (see
    // `spawn`). Declared after `root`, so they are killed before it is removed.
    let mut servers = [Server::start(&cfg, OURS, root.path())?, Server::start(&cfg, ETCD, root.path())?, Server::start(&cfg, KINE, root.path())?];
    eprintln!(
        "benchmarking {} (pid {}), {} (pid {}) and {} (pid {}) under {}",
        cfg.k8s_bin.display(), servers[OURS].pid(), cfg.etcd_bin.display(), servers[ETCD].pid(),
        cfg.kine_bin.display(), servers[KINE].pid(), root.path().display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = run(&cfg, &mut servers) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(rt);
    drop(servers);
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", root.keep().display());
    } else {
        drop(root);
    }
    result
}

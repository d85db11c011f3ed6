//! The node side of an upgrade, an in-process service of every `k8s
//! server` and `k8s agent` that runs a node. It watches its own Node for
//! the controller's order (see [`super::protocol`]) and reports on it:
//!
//! ```text
//! start:  rolled back by the guard? ─▶ report RolledBack (then nothing more for that order)
//!         a pending upgrade to this very version? ─▶ Verifying ─▶ Soaking (Node Ready for the soak)
//!                                                   ─▶ commit (guard disarmed) ─▶ Committed
//! order stage: Staging ─▶ a server's own copy, else download from the order's sources in turn
//!              (kubelet certificate) ─▶ sha256, version ─▶ Staged (or Failed); a server keeps
//!              the binary to serve it to the nodes after it
//!
//! Healthy, for the soak and the commit: the Node Ready; on a server also
//! the local API server's `/readyz` and, in HA, every etcd member a voter
//! answering with the same leader (full quorum).
//! order swap:  Swapping ─▶ swap (k8s.prev kept, pending recorded) ─▶ guard armed ─▶ service restarted
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::crd::NodePhase;
use super::protocol::{self, Order, Report, Step, REPORT_ANNOTATION};
use super::swap::{Host, Pending, GUARD_UNIT};
use crate::https::HttpsClient;
use crate::kubeclient;
use crate::version::VERSION;

/// How often the own Node is read again even without a change.
const RESYNC: Duration = Duration::from_secs(60);

/// What the executor needs of the node it runs on.
pub struct Executor {
    pub kubelet: Client,
    /// The kubelet's kubeconfig (its client certificate fetches binaries).
    pub kubelet_kubeconfig: PathBuf,
    /// The cluster CA (the source's certificate chains to it).
    pub ca: PathBuf,
    pub node_name: String,
    pub host: Host,
    /// The systemd unit that runs this `k8s` (`k8s-server`, `k8s-agent`).
    pub unit: &'static str,
    /// What a server checks and serves besides its node; None on agents.
    pub server: Option<ServerSide>,
}

/// A server's part in the upgrade of its own node.
pub struct ServerSide {
    /// The local API server (its `/readyz` gates the commit).
    pub api: Client,
    /// The etcd PKI in HA (full quorum gates the commit).
    pub etcd: Option<crate::pki::Pki>,
    /// Where the join endpoint serves binaries from (by sha256).
    pub binaries: PathBuf,
    /// The SQLite datastore's dir on a single server: snapshotted before
    /// the swap (`<data-dir>/upgrade/datastore-<from>.db`).
    pub sqlite: Option<PathBuf>,
}

/// Rounds over the order's sources before a download fails.
const DOWNLOAD_ROUNDS: usize = 3;
/// One try at one server; what arrived is kept for the next.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// How often health is checked while soaking.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

impl Executor {
    /// Runs the executor as an in-process service of `sup`.
    pub fn spawn(self, sup: &mut crate::components::Supervisor) {
        sup.spawn("upgrade-executor", move |stop| async move {
            stop.or(self.run()).await;
            Ok(())
        });
    }

    /// Finishes what a restart left (a rollback to report, an upgrade to
    /// verify), then carries out orders; never returns.
    pub async fn run(self) {
        if let Err(e) = self.after_restart().await {
            tracing::error!("upgrade: {e:#}");
        }
        let nodes: Api<Node> = Api::all(self.kubelet.clone());
        let own = watcher::Config::default().fields(&format!("metadata.name={}", self.node_name));
        let mut snapshots = std::pin::pin!(kubeclient::follow(nodes, own, Some(RESYNC)));
        while let Some(list) = snapshots.next().await {
            let Some(node) = list.first() else { continue };
            let Some(order) = protocol::order_of(node) else { continue };
            if !self.is_news(&order, protocol::report_of(node)) {
                continue;
            }
            if let Err(e) = self.carry_out(&order).await {
                tracing::error!(plan = %order.plan, version = %order.version, "upgrade failed: {e:#}");
                self.report(&order.plan, &order.version, NodePhase::Failed, &format!("{e:#}")).await;
            }
        }
    }

    /// Whether `order` asks for something this node has not done yet.
    fn is_news(&self, order: &Order, report: Option<Report>) -> bool {
        if order.version == VERSION {
            return false; // after_restart verifies a swap to this version
        }
        let done = match report.filter(|r| r.plan == order.plan && r.version == order.version) {
            None => return true,
            Some(r) => r.phase,
        };
        match order.step {
            Step::Stage => done.rank() < NodePhase::Staging.rank(),
            Step::Swap => done.rank() < NodePhase::Swapping.rank(),
        }
    }

    async fn carry_out(&self, order: &Order) -> anyhow::Result<()> {
        match order.step {
            Step::Stage => {
                self.report(&order.plan, &order.version, NodePhase::Staging, "").await;
                let staged = self.stage(order).await?;
                self.report(&order.plan, &order.version, NodePhase::Staged, &format!("{} checked", staged.display())).await;
            }
            Step::Swap => {
                self.report(&order.plan, &order.version, NodePhase::Swapping, "").await;
                self.swap(order).await?;
            }
        }
        Ok(())
    }

    /// Fetches the order's binary and checks it; a server keeps a copy to
    /// serve.
    async fn stage(&self, order: &Order) -> anyhow::Result<PathBuf> {
        let staged = self.host.dir.join(format!("k8s-{}", order.version));
        if staged.exists() {
            std::fs::remove_file(&staged)?; // checked again from a fresh copy
        }
        std::fs::create_dir_all(&self.host.dir)?;
        check_free_space(&self.host.dir)?;
        // Named by the binary, so only a download of the same binary resumes.
        let part = self.host.dir.join(format!("download-{}.part", order.sha256));
        let served = self.server.as_ref().map(|s| s.binaries.join(&order.sha256));
        match served.as_ref().filter(|p| p.exists()) {
            Some(local) => {
                std::fs::copy(local, &part).with_context(|| format!("cannot copy {}", local.display()))?;
            }
            None => self.download(order, &part).await?,
        }
        let host = self.host.clone();
        let (sha256, version) = (order.sha256.clone(), order.version.clone());
        let checked = part.clone();
        let staged = match tokio::task::spawn_blocking(move || host.stage(&part, &sha256, &version)).await? {
            Ok(staged) => staged,
            Err(e) => {
                // A damaged download is not resumed: the next order starts over.
                let _ = std::fs::remove_file(&checked);
                return Err(e);
            }
        };
        if let Some(served) = served.filter(|p| !p.exists()) {
            std::fs::create_dir_all(served.parent().unwrap_or(Path::new("/")))?;
            if std::fs::hard_link(&staged, &served).is_err() {
                super::swap::install(&staged, &served)?;
            }
        }
        Ok(staged)
    }

    /// Downloads the binary from the order's sources, in turn; an
    /// interrupted transfer resumes from what arrived, at the same or the
    /// next server (three rounds over the sources at most).
    async fn download(&self, order: &Order, part: &Path) -> anyhow::Result<()> {
        let client = self.download_client()?;
        let path = format!("/v1/upgrade/binary/{}", order.sha256);
        let mut errors = Vec::new();
        for round in 0..DOWNLOAD_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            for source in &order.sources {
                let (host, port) = match crate::join::client::parse_url(source) {
                    Ok(hp) => hp,
                    Err(e) => {
                        errors.push(format!("{e:#}"));
                        continue;
                    }
                };
                let fetch = tokio::time::timeout(DOWNLOAD_TIMEOUT, client.download(&host, port, &path, part));
                match fetch.await.unwrap_or_else(|_| Err(anyhow::anyhow!("{source}: stalled for {DOWNLOAD_TIMEOUT:?}"))) {
                    Ok(bytes) => {
                        tracing::info!(version = %order.version, %source, bytes, "upgrade binary downloaded");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!(%source, "upgrade binary download: {e:#}");
                        errors.push(format!("{e:#}"));
                    }
                }
            }
        }
        errors.dedup();
        bail!("no server could send the binary: {}", errors.join("; "))
    }

    /// The kubelet's client certificate, trusting the cluster CA only.
    fn download_client(&self) -> anyhow::Result<HttpsClient> {
        HttpsClient::with_kubeconfig_cert(&self.ca, &self.kubelet_kubeconfig)
    }

    /// Swaps in the staged binary, arms the guard, restarts the service.
    async fn swap(&self, order: &Order) -> anyhow::Result<()> {
        if std::env::var_os("INVOCATION_ID").is_none() {
            bail!("k8s does not run under systemd here, and the rollback guard needs it");
        }
        let staged = self.host.dir.join(format!("k8s-{}", order.version));
        anyhow::ensure!(staged.exists(), "no staged binary {}; the order skipped staging", staged.display());
        let pending = Pending {
            plan: order.plan.clone(),
            from: VERSION.to_string(),
            to: order.version.clone(),
            deadline: now() + order.deadline_seconds,
            unit: self.unit.to_string(),
            soak_seconds: order.soak_seconds,
        };
        self.snapshot_datastore()?;
        self.host.swap(&staged, &pending)?;
        let data_dir = self.host.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        let guard = self.host.guard_timer(&data_dir, Duration::from_secs(order.deadline_seconds));
        // A guard left from an earlier upgrade (committed or not) goes first.
        let _ = run(&["systemctl".to_string(), "stop".into(), format!("{GUARD_UNIT}.timer"), format!("{GUARD_UNIT}.service")]);
        let _ = run(&["systemctl".to_string(), "reset-failed".into(), format!("{GUARD_UNIT}.service")]);
        if let Err(e) = run(&guard) {
            // No guard, no swap: put the running binary back at once.
            self.host.guard(u64::MAX)?;
            self.host.take_rollback()?;
            return Err(e.context("cannot arm the rollback guard; the previous binary stays"));
        }
        tracing::warn!(from = VERSION, to = %order.version, unit = self.unit, "upgrade: binary swapped, guard armed; restarting");
        run(&["systemctl".to_string(), "--no-block".into(), "restart".into(), self.unit.to_string()])
    }

    /// A single server's datastore is copied before its binary changes, so
    /// an upgrade that damages it can be undone by hand (docs/upgrade.md).
    fn snapshot_datastore(&self) -> anyhow::Result<()> {
        let Some(db) = self.server.as_ref().and_then(|s| s.sqlite.as_ref()) else { return Ok(()) };
        let dest = self.host.dir.join(format!("datastore-{VERSION}.db"));
        let rev = crate::datastore::snapshot_to(db, &dest).context("snapshotting the datastore before the swap")?;
        tracing::info!(file = %dest.display(), rev, "datastore snapshot before the upgrade");
        Ok(())
    }

    /// After a restart: report a rollback the guard did, or verify and
    /// commit a swap to this binary's version.
    async fn after_restart(&self) -> anyhow::Result<()> {
        if let Some(p) = self.host.take_rollback()? {
            let message = format!("k8s {} did not become healthy in time; the guard put k8s {} back", p.to, p.from);
            tracing::warn!(plan = %p.plan, "upgrade rolled back: {message}");
            self.report(&p.plan, &p.to, NodePhase::RolledBack, &message).await;
            return Ok(());
        }
        let Some(p) = self.host.pending()? else { return Ok(()) };
        if p.to != VERSION {
            return Ok(()); // the swap did not complete; the guard restores the binary
        }
        self.report(&p.plan, &p.to, NodePhase::Soaking, &format!("healthy for {} s before commit", p.soak_seconds)).await;
        if let Err(why) = self.soak(&p).await {
            // Not committing leaves the rollback to the guard.
            self.report(&p.plan, &p.to, NodePhase::Soaking, &format!("{why}; the guard will roll back")).await;
            return Ok(());
        }
        self.host.commit()?;
        let _ = run(&["systemctl".to_string(), "stop".into(), format!("{GUARD_UNIT}.timer")]);
        tracing::info!(plan = %p.plan, from = %p.from, to = %p.to, "upgrade committed");
        self.report(&p.plan, &p.to, NodePhase::Committed, &format!("k8s {} → {}", p.from, p.to)).await;
        Ok(())
    }

    /// Waits until the node has been healthy for the soak time without a
    /// break; gives up (an error saying what is wrong) when the pending
    /// upgrade's deadline comes within a minute.
    async fn soak(&self, p: &Pending) -> Result<(), String> {
        let soak = Duration::from_secs(p.soak_seconds);
        let mut healthy_since: Option<tokio::time::Instant> = None;
        loop {
            match self.unhealthy().await {
                None => {
                    let since = *healthy_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= soak {
                        return Ok(());
                    }
                }
                Some(why) => {
                    healthy_since = None;
                    if now() + 60 >= p.deadline {
                        return Err(format!("not healthy: {why}"));
                    }
                    tracing::info!("upgrade: waiting to be healthy: {why}");
                }
            }
            tokio::time::sleep(HEALTH_INTERVAL.min(soak.max(Duration::from_secs(1)))).await;
        }
    }

    /// What is wrong with this node now, if anything.
    async fn unhealthy(&self) -> Option<String> {
        let ready = kubeclient::wait_node(&self.kubelet, &self.node_name, Duration::from_secs(10), "Ready", |n| kubeclient::node_ready(n).then_some(())).await;
        if let Err(e) = ready {
            return Some(format!("{e:#}"));
        }
        let server = self.server.as_ref()?;
        if let Err(e) = kubeclient::wait_ready(&server.api, Duration::from_secs(5)).await {
            return Some(format!("{e:#}"));
        }
        let problems = match &server.etcd {
            Some(pki) => crate::etcd::health::problems(pki).await,
            None => vec![],
        };
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Writes the report on the own Node (best effort: the controller reads
    /// the next one).
    async fn report(&self, plan: &str, version: &str, phase: NodePhase, message: &str) {
        let report = Report { plan: plan.into(), version: version.into(), phase, message: message.into() };
        let patch = Node {
            metadata: ObjectMeta {
                annotations: Some([(REPORT_ANNOTATION.to_string(), serde_json::to_string(&report).unwrap_or_default())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let nodes: Api<Node> = Api::all(self.kubelet.clone());
        if let Err(e) = nodes.patch(&self.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!("upgrade: cannot report {phase:?}: {e}");
        }
    }
}

/// Room for the download, the staged copy, the new binary beside the old
/// one and its components unpacked at the first start.
const NEEDED_FREE_BYTES: u64 = 768 << 20;

/// Fails before anything is fetched when `dir`'s filesystem is short of room
/// (the node is then neither cordoned nor swapped).
fn check_free_space(dir: &Path) -> anyhow::Result<()> {
    let free = crate::fsutil::free_bytes(dir)?;
    if free < NEEDED_FREE_BYTES {
        bail!("{} MiB free under {}, an upgrade needs {} MiB; free some space and start the plan again", free >> 20, dir.display(), NEEDED_FREE_BYTES >> 20);
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn run(cmd: &[String]) -> anyhow::Result<()> {
    let out = std::process::Command::new(&cmd[0]).args(&cmd[1..]).output().with_context(|| format!("cannot run {}", cmd[0]))?;
    if !out.status.success() {
        bail!("{}: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

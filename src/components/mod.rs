//! The components of a running `k8s server` or `k8s agent`, under one
//! owner. Two kinds, one lifecycle:
//!
//! - **child processes** (the upstream parts: kube-control-plane, kubelet,
//!   containerd, …; [`Supervisor::start`]): each has its own log file, is
//!   restarted with backoff when it dies, and gets SIGKILL when `k8s`
//!   itself dies, so a `kill -9` of `k8s` never leaves a control plane
//!   running without its supervisor;
//! - **in-process services** (the SQLite datastore, the join endpoint, the
//!   route follower, the API load balancer; [`Supervisor::spawn`]): a
//!   future that owns its retries and returns only when told to stop.
//!
//! ```text
//!            start / spawn            stop_all (reverse start order)
//!   (none) ───────────────▶ Starting ─▶ Running ──────────────▶ Stopped
//!                                        │   ▲
//!             child process exits ──────┘   │ restarted after backoff
//!                                     Exited ┘
//!   in-process service returns an error  ─▶ Failed (not restarted: the
//!                                           service retries inside itself)
//! ```
//!
//! The contract for callers: start a component only once what it needs is
//! ready (the start order is the dependency order); never stop one alone;
//! `stop_all` stops every component, last started first, each fully
//! (SIGTERM then SIGKILL after a grace period; a service's stop signal then
//! its return) before the next, so the datastore stops after everything
//! that writes to it.

use std::future::Future;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;


const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Logs above this size are rotated (one old copy kept) when a component starts.
const LOG_ROTATE_BYTES: u64 = 20 << 20;

/// How to run one component.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    Running { pid: u32, since: std::time::SystemTime },
    Exited { code: Option<i32>, restarts: u32 },
    /// An in-process service gave up.
    Failed { error: String },
    Stopped,
}

/// A supervised component.
pub struct Handle {
    pub name: String,
    state: watch::Receiver<State>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }
}

/// Starts `spec` and keeps it running until the handle is stopped.
pub fn start(spec: Spec) -> Handle {
    let (state_tx, state) = watch::channel(State::Starting);
    let (stop, stop_rx) = watch::channel(false);
    let name = spec.name.clone();
    let task = tokio::spawn(supervise(Arc::new(spec), state_tx, stop_rx));
    Handle { name, state, stop, task }
}

async fn supervise(spec: Arc<Spec>, state: watch::Sender<State>, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_START;
    let mut restarts = 0;
    loop {
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(component = %spec.name, error = %e, "cannot start");
                state.send_replace(State::Exited { code: None, restarts });
                if wait_or_stop(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(component = %spec.name, pid, "started");
        state.send_replace(State::Running { pid, since: std::time::SystemTime::now() });
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(status) = exited else {
            terminate(&spec.name, &mut child).await;
            break;
        };
        let code = status.ok().and_then(|s| s.code());
        restarts += 1;
        tracing::warn!(component = %spec.name, ?code, log = %spec.log.display(), "exited; restarting after {:?}", backoff);
        state.send_replace(State::Exited { code, restarts });
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_START;
        }
        if wait_or_stop(&mut stop, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    state.send_replace(State::Stopped);
}

/// Waits `delay`; true when asked to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    let _ = tokio::time::timeout(delay, stop.wait_for(|s| *s)).await;
    *stop.borrow()
}

fn spawn(spec: &Spec) -> std::io::Result<Child> {
    rotate(&spec.log);
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Component logs can hold request details: root's only, whatever the umask.
    let log = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&spec.log)?;
    log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Die with us; and a process group of its own, so a terminal's
            // Ctrl-C reaches k8s only and k8s stops children in order.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Our units run k8s with UMask=0077 (its own files are private);
            // the components keep the usual 022, or the directories the
            // kubelet and containerd make for pods would shut out non-root
            // containers.
            libc::umask(0o022);
            Ok(())
        });
    }
    cmd.spawn()
}

fn rotate(log: &std::path::Path) {
    if std::fs::metadata(log).map_or(false, |m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(log, log.with_extension("log.1"));
    }
}

async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling a child we own.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => tracing::info!(component = name, "stopped"),
        Err(_) => {
            tracing::warn!(component = name, "did not stop in {:?}; killing", STOP_GRACE);
            let _ = child.kill().await;
        }
    }
}

/// Tells an in-process service to stop.
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the service is asked to stop.
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Runs `work` until it ends or a stop is asked for (then drops it):
    /// for services that hold nothing to close.
    pub async fn or<T>(mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = work => Some(out),
            _ = self.requested() => None,
        }
    }
}

/// Runs the service `run` makes until it returns; it gets the stop signal.
pub fn service<F, Fut>(name: &str, run: F) -> Handle
where
    F: FnOnce(Stop) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (state_tx, state) = watch::channel(State::Running { pid: std::process::id(), since: std::time::SystemTime::now() });
    let (stop, stop_rx) = watch::channel(false);
    let service = run(Stop(stop_rx));
    let owned = name.to_string();
    let task = tokio::spawn(async move {
        match service.await {
            Ok(()) => state_tx.send_replace(State::Stopped),
            Err(e) => {
                tracing::error!(component = %owned, "failed: {e:#}");
                state_tx.send_replace(State::Failed { error: format!("{e:#}") })
            }
        };
    });
    Handle { name: name.to_string(), state, stop, task }
}

/// Components in start order; stops them in reverse.
#[derive(Default)]
pub struct Supervisor {
    handles: Vec<Handle>,
}

impl Supervisor {
    /// Starts a child process (see the module's doc for the lifecycle).
    pub fn start(&mut self, spec: Spec) -> &Handle {
        self.handles.push(start(spec));
        self.handles.last().unwrap()
    }

    /// Starts an in-process service (see the module's doc for the lifecycle).
    pub fn spawn<F, Fut>(&mut self, name: &str, run: F) -> &Handle
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.handles.push(service(name, run));
        self.handles.last().unwrap()
    }

    pub fn states(&self) -> Vec<(String, State)> {
        self.handles.iter().map(|h| (h.name.clone(), h.state())).collect()
    }

    /// Stops every component, last started first.
    pub async fn stop_all(&mut self) {
        while let Some(h) = self.handles.pop() {
            let _ = h.stop.send(true);
            let _ = h.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str) -> Spec {
        Spec {
            name: "test".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            log: dir.join("test.log"),
        }
    }

    #[tokio::test]
    async fn services_and_processes_stop_in_reverse_start_order() {
        let dir = tempfile::tempdir().unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut sup = Supervisor::default();
        let record = |name: &'static str| {
            let order = order.clone();
            move |mut stop: Stop| async move {
                stop.requested().await;
                order.lock().unwrap().push(name);
                Ok(())
            }
        };
        sup.spawn("store", record("store"));
        sup.start(spec(dir.path(), "trap 'exit 0' TERM; while true; do sleep 0.1; done"));
        sup.spawn("follower", record("follower"));
        sup.spawn("broken", |_| async { anyhow::bail!("no luck") });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let states = sup.states();
        assert!(matches!(&states[3].1, State::Failed { error } if error == "no luck"), "{states:?}");
        assert!(matches!(states[0].1, State::Running { pid, .. } if pid == std::process::id()));
        sup.stop_all().await;
        assert_eq!(*order.lock().unwrap(), ["follower", "store"]);
    }

    #[tokio::test]
    async fn restarts_a_dying_component_and_logs_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::default();
        sup.start(spec(dir.path(), "echo hello; exit 3"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (_, state) = sup.states().pop().unwrap();
        assert!(matches!(state, State::Exited { code: Some(3), restarts: 2 }), "{state:?}");
        sup.stop_all().await;
        let log = std::fs::read_to_string(dir.path().join("test.log")).unwrap();
        assert!(log.matches("hello").count() >= 2, "restarted: {log}");
    }

    #[tokio::test]
    async fn stop_sends_sigterm_then_the_component_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut sup = Supervisor::default();
        let pid_file = dir.path().join("pid");
        sup.start(spec(dir.path(), &format!("echo $$ > {}; trap 'echo term; exit 0' TERM; while true; do sleep 0.1; done", pid_file.display())));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        sup.stop_all().await;
        assert!(std::fs::read_to_string(dir.path().join("test.log")).unwrap().contains("term"));
        // SAFETY: signal 0 only checks existence.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "process {pid} is gone");
    }
}

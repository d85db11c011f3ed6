//! Shared harness for the datastore integration tests: starts the real
//! `k8s datastore` binary on a free loopback port, waits until it answers,
//! and kills it when dropped.
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_k8s");

/// How long a fresh datastore may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now (loopback).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// Runs `f`, failing the test if it takes longer than `secs`.
pub async fn bounded<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {secs}s"),
    }
}

/// The gRPC status behind an etcd-client error, if it is one.
pub fn status_of(e: &etcd_client::Error) -> Option<&tonic::Status> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        _ => None,
    }
}

/// Asserts that `r` failed with a gRPC status whose message contains `msg`.
#[track_caller]
pub fn expect_grpc_err<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>, msg: &str) -> tonic::Status {
    match r {
        Ok(v) => panic!("expected error containing {msg:?}, got success: {v:?}"),
        Err(e) => match status_of(&e) {
            Some(s) => {
                assert!(
                    s.message().contains(msg),
                    "expected error containing {msg:?}, got status {:?}: {:?}",
                    s.code(),
                    s.message()
                );
                s.clone()
            }
            None => panic!("expected gRPC error containing {msg:?}, got {e:?}"),
        },
    }
}

/// How to launch the process.
#[derive(Clone, Default)]
pub struct Launch {
    /// Extra flags after the mandatory ones.
    pub extra: Vec<String>,
    /// A shell snippet run first in a private mount namespace (`unshare -m`);
    /// the datastore is then exec'd in that namespace, so its mounts vanish
    /// with it and never leak into the machine.
    pub ns_setup: Option<String>,
}

/// Builds the command line for one run.
pub fn command(data_dir: &Path, listen: &[String], launch: &Launch) -> Command {
    let mut args: Vec<String> = vec!["datastore".into(), "--data-dir".into(), data_dir.display().to_string()];
    for l in listen {
        args.push("--listen".into());
        args.push(l.clone());
    }
    args.extend(launch.extra.iter().cloned());
    let mut cmd = match &launch.ns_setup {
        None => {
            let mut c = Command::new(BIN);
            c.args(&args);
            c
        }
        Some(setup) => {
            // unshare execs sh, sh execs the datastore: one pid throughout.
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(format!("set -e; {setup}; exec \"$0\" \"$@\""))
                .arg(BIN)
                .args(&args);
            c
        }
    };
    cmd.env("K8S_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

pub struct Datastore {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub port: u16,
    pub endpoint: String,
    pub launch: Launch,
    extra_listen: Vec<String>,
    logs: tempfile::TempDir,
    runs: usize,
}

impl Datastore {
    /// Starts a datastore on a fresh port with `data_dir` and waits until it
    /// answers a Status request.
    pub async fn start(data_dir: &Path) -> Datastore {
        Self::start_with(data_dir, Launch::default()).await
    }

    pub async fn start_with(data_dir: &Path, launch: Launch) -> Datastore {
        let port = free_port();
        let mut ds = Datastore {
            child: None,
            data_dir: data_dir.to_path_buf(),
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            launch,
            extra_listen: Vec::new(),
            logs: tempfile::tempdir().expect("log dir"),
            runs: 0,
        };
        ds.spawn();
        ds.wait_ready().await;
        ds
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join(format!("stderr.{}", self.runs))
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let mut listen = vec![self.endpoint.clone()];
        listen.extend(self.extra_listen.iter().cloned());
        let log = File::create(self.log_path()).expect("log file");
        let child = command(&self.data_dir, &listen, &self.launch)
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn k8s datastore");
        self.child = Some(child);
    }

    /// Everything the current run wrote to stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Polls until the server answers, failing fast if it exited.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("datastore exited early with {status}; stderr:\n{}", self.stderr());
            }
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(2));
            if let Ok(mut c) = Client::connect([&self.endpoint], Some(opts)).await {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), c.status()).await {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("datastore did not answer within {READY_TIMEOUT:?}; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for this server (no request timeout: tests bound their own
    /// waits, and watch streams must not be cut).
    pub async fn client(&self) -> Client {
        let opts = ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
        Client::connect([&self.endpoint], Some(opts)).await.expect("client")
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (at most `secs`). Returns the exit status, or None
    /// if it was not running; on timeout it SIGKILLs and returns Err with
    /// the time waited. Async so this process's clients keep being driven
    /// (HTTP/2 graceful shutdown needs the client to answer a PING).
    pub async fn terminate_within(&mut self, secs: u64) -> Result<Option<ExitStatus>, Duration> {
        let Some(mut child) = self.child.take() else { return Ok(None) };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Ok(Some(s));
            }
            if started.elapsed() > Duration::from_secs(secs) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait at most 10 s; fails the test if it does not stop.
    pub async fn terminate(&mut self) -> Option<ExitStatus> {
        match self.terminate_within(10).await {
            Ok(s) => s,
            Err(waited) => panic!("datastore ignored SIGTERM for {waited:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Kills (SIGKILL) if running, starts again on the same port and data
    /// dir, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for Datastore {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a datastore that is expected to refuse to start: returns its exit
/// status and stderr. Fails if it is still running after `secs`.
pub fn run_expect_exit(data_dir: &Path, listen: &[String], launch: &Launch, secs: u64) -> (ExitStatus, String, Duration) {
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("stderr");
    let log = File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = command(data_dir, listen, launch).stderr(Stdio::from(log)).spawn().expect("spawn");
    let deadline = started + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let took = started.elapsed();
            return (status, std::fs::read_to_string(&log_path).unwrap_or_default(), took);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "datastore was expected to exit but still runs after {secs}s; stderr:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Header revision of a Status call: the store's current revision.
pub async fn current_rev(c: &mut Client) -> i64 {
    c.status().await.expect("status").header().expect("header").revision()
}

//! The running server's state, written to `/run/k8s/status.json` for
//! `k8s status` to read.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::components::{State, Supervisor};

use crate::host::Layout;

#[derive(Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// The server's node name (also when it runs no node).
    #[serde(default)]
    pub node: String,
    pub ready: bool,
    pub components: Vec<Component>,
}

#[derive(Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
}

pub struct Writer {
    path: PathBuf,
    node: String,
    ready: std::sync::atomic::AtomicBool,
}

impl Writer {
    pub fn start(layout: &Layout, node: &str) -> Writer {
        Writer { path: layout.status_file(), node: node.to_string(), ready: Default::default() }
    }

    pub fn refresh(&self, sup: &Supervisor) {
        let components = sup
            .states()
            .into_iter()
            .map(|(name, state)| {
                let (state, pid) = describe(&state);
                Component { name, state, pid }
            })
            .collect();
        let status = Status { pid: std::process::id(), node: self.node.clone(), ready: self.ready.load(std::sync::atomic::Ordering::Relaxed), components };
        let json = serde_json::to_vec_pretty(&status).expect("status serializes");
        if let Err(e) = crate::fsutil::write_atomic(&self.path, &json, 0o644) {
            tracing::warn!("cannot write {}: {e:#}", self.path.display());
        }
    }

    pub fn set_ready(&self, sup: &Supervisor) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        self.refresh(sup);
    }

    pub async fn refresh_forever(&self, sup: &Supervisor) {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.refresh(sup);
        }
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn describe(state: &State) -> (String, Option<u32>) {
    match state {
        State::Starting => ("starting".into(), None),
        State::Running { pid, since } => {
            let up = since.elapsed().unwrap_or_default().as_secs();
            (format!("running for {up}s"), Some(*pid))
        }
        State::Exited { code, restarts } => (
            format!("exited ({}), restarts: {restarts}", code.map_or("signal".into(), |c| format!("code {c}"))),
            None,
        ),
        State::Failed { error } => (format!("failed: {error}"), None),
        State::Stopped => ("stopped".into(), None),
    }
}

/// Reads the status of a running server, if one is running.
pub fn read(layout: &Layout) -> Option<Status> {
    let text = std::fs::read_to_string(layout.status_file()).ok()?;
    let status: Status = serde_json::from_str(&text).ok()?;
    std::path::Path::new(&format!("/proc/{}", status.pid)).exists().then_some(status)
}

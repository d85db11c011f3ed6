//! Waiting for the signals that ask a process to stop.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
pub async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

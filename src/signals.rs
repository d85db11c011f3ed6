//! Waiting for the signals that ask a process to stop.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C). The handlers are
/// installed when this is called, not when first polled, so a signal that
/// arrives in between is not lost.
pub fn terminated() -> impl std::future::Future<Output = ()> {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

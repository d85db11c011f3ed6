//! What can go wrong on the way to a host and on it. Every message names
//! the host (as `Target::name`) and says what to do.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A problem in `~/.ssh/config` or in the target's settings.
    #[error("{host}: {message}")]
    Config { host: String, message: String },

    #[error("cannot reach {host} at {addr}: {reason}; check the address and port, and that sshd runs there")]
    Unreachable { host: String, addr: String, reason: String },

    #[error(
        "the host key of {host} ({entry}, {fingerprint}) is not in {file}, and host-key-checking is strict; \
         check the fingerprint with the host's owner, then add it with `ssh-keyscan{port_arg} {address} >> {file}` \
         (or set host-key-checking: accept-new to record it on first contact)",
        file = file.display()
    )]
    HostKeyUnknown { host: String, entry: String, address: String, port_arg: String, fingerprint: String, file: PathBuf },

    #[error(
        "@@@ THE HOST KEY OF {host} ({entry}) HAS CHANGED @@@ {file}:{line} has {known}, the host now offers \
         {offered}. Someone may be intercepting the connection (man-in-the-middle), or the host was reinstalled. \
         Refusing to connect. If you know why it changed, remove the old key with \
         `ssh-keygen -R '{entry}' -f {file}` and run again",
        file = file.display()
    )]
    HostKeyChanged { host: String, entry: String, file: PathBuf, line: usize, known: String, offered: String },

    #[error(
        "the host key of {host} ({entry}, {fingerprint}) is marked @revoked in {file}:{line}; refusing to connect",
        file = file.display()
    )]
    HostKeyRevoked { host: String, entry: String, fingerprint: String, file: PathBuf, line: usize },

    #[error("{host}: cannot use known_hosts file {file}: {error}; check its path and permissions", file = file.display())]
    KnownHosts { host: String, file: PathBuf, error: String },

    #[error("{host}: {file}: {message}", file = file.display())]
    KeyFile { host: String, file: PathBuf, message: String },

    #[error("authentication as {user} on {host} failed; tried {tried}. {advice}")]
    Auth { host: String, user: String, tried: String, advice: String },

    #[error(
        "user {user} on host {host} needs a password for sudo; give it passwordless sudo for k8s \
         (a line `{user} ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/k8s) or connect as root"
    )]
    SudoPassword { host: String, user: String },

    #[error("user {user} on host {host} cannot use sudo: {stderr}; install sudo and allow {user} to use it without a password, or connect as root")]
    SudoUnavailable { host: String, user: String, stderr: String },

    #[error("on {host}: `{command}` exited with status {status}: {}", stderr_or_none(stderr))]
    Command { host: String, command: String, status: u32, stderr: String },

    #[error("{host}: {what} timed out after {}; the host or the network may be overloaded, raise ssh.timeout if it is just slow", secs(after))]
    Timeout { host: String, what: String, after: Duration },

    #[error("{host}: the connection was lost during {what}: {reason}; check the host and the network, then run again")]
    Lost { host: String, what: String, reason: String },

    #[error("{host}: {remote}: {message}")]
    Remote { host: String, remote: String, message: String },

    #[error("{host}: cannot read {file}: {error}", file = file.display())]
    Local { host: String, file: PathBuf, error: String },
}

fn stderr_or_none(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        "(no error output)".into()
    } else {
        // Long outputs: the end says what failed.
        let tail: Vec<&str> = s.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

pub(crate) fn secs(d: &Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

//! SSH from the workstation to the hosts `k8s up` installs (russh): key
//! files and ssh-agent, `~/.ssh/config`, jump hosts, known_hosts checking,
//! sudo, and uploads checked with sha256 on the host.
//!
//! Use: build a [`Target`] per host (the inventory's `SshSettings::target`), load the keys
//! once with [`Keys::prepare`] (it may ask for passphrases, so call it before
//! showing progress), then [`Session::connect`] and run commands or copy files.

mod config;
mod connect;
mod error;
mod keys;
mod known_hosts;
mod session;
mod target;

pub use error::SshError;
pub use keys::{Keys, PASSPHRASE_ENV};
pub use session::{sh_quote, Output, Session, Upload, Written, SHA256_FN};
pub use target::{HostKeyChecking, Sudo, Target};

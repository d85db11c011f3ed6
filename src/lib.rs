//! `k8s`: a lightweight Kubernetes distribution in one binary. The modules
//! are a library so that integration tests use them directly; the binary
//! (`main.rs`) is the command line over them.
//!
//! Layers, top to bottom (imports point down only; see docs/architecture.md):
//! `cli` and the small commands → `up` (with `inventory`, `ssh`), `server`,
//! `agent` → `upgrade` (controllers) → `node`, `join` → `backup`, `encryption`, `kubeclient`,
//! `etcd`, `datastore`, `pki`, `payload`, `release`, `components` → `host`.

pub mod agent;
pub mod backup;
pub mod certs;
pub mod check_config;
pub mod cli;
pub mod components;
pub mod controllers;
pub mod datastore;
pub mod duration;
pub mod encryption;
pub mod etcd;
pub mod fsutil;
pub mod host;
pub mod inventory;
pub mod https;
pub mod join;
pub mod kubeclient;
pub mod node;
pub mod payload;
pub mod pki;
pub mod prompt;
pub mod release;
pub mod reset;
pub mod secrets_encrypt;
pub mod server;
pub mod signals;
pub mod ssh;
pub mod status;
pub mod systemd;
pub mod templates;
pub mod tools;
pub mod up;
pub mod upgrade;
pub mod version;

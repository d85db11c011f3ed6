//! `hosts.yaml`, the inventory `k8s up -i hosts.yaml` works from: cluster
//! settings, SSH defaults and the hosts with their roles. Loading checks the
//! whole file and reports every problem at once, each with `file:line:col`
//! and the field's path; it also chooses the mode: one server → a single
//! server on SQLite, 3, 5 or 7 → HA on etcd. The reference is
//! `docs/inventory.md`; copyable examples are in `inventories/`.
//!
//! How: the text is parsed into a `serde_yaml::Value` (syntax errors carry
//! their position), then `read` walks it by hand so that an unknown key or a
//! wrong type does not stop the walk, and `check` looks across fields.
//! Problems are kept with their field path; `locate` finds each path's line
//! and column by walking the text again with serde_yaml's own parser.

mod check;
mod error;
mod locate;
mod model;
mod read;
mod ssh_target;
mod syntax;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

pub use error::{InventoryError, Problem};
pub use model::*;

use locate::{locate, FieldPath};
use read::{Pending, Reader};

/// A checked inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The path it was loaded from.
    pub file: PathBuf,
    pub cluster: Cluster,
    pub ssh: SshDefaults,
    /// In file order.
    pub hosts: Vec<Host>,
    mode: Mode,
    warnings: Vec<Problem>,
}

impl Inventory {
    /// Reads and checks an inventory file.
    pub fn load(path: impl AsRef<Path>) -> Result<Inventory, InventoryError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| InventoryError::Read { path: path.into(), error })?;
        Inventory::parse(&text, path)
    }

    /// Checks inventory text; `path` names it in messages and anchors
    /// relative paths (its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let file = path.display().to_string();
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut doc: Value = serde_yaml::from_str(text)
            .map_err(|e| InventoryError::Invalid { problems: vec![yaml_problem(&file, text, &e)] })?;
        if doc.is_null() {
            let message = "the inventory is empty; it needs at least hosts: (see inventories/single.yaml)".into();
            return Err(InventoryError::Invalid {
                problems: vec![Problem { file, line: 1, column: 1, field: String::new(), message }],
            });
        }
        doc.apply_merge().map_err(|e| InventoryError::Invalid { problems: vec![yaml_problem(&file, text, &e)] })?;

        let mut reader = Reader::default();
        let draft = reader.read(&doc, &base_dir);
        let line_of = |p: &FieldPath| locate(text, &p.0, false).0;
        let mut warnings = vec![];
        let mode = check::check(&draft, &mut reader, &mut warnings, &line_of);
        if !reader.problems.is_empty() {
            return Err(InventoryError::Invalid { problems: resolve(text, &file, reader.problems) });
        }
        let (Some(mode), Some(hosts)) = (mode, draft.hosts) else {
            // `check` reports a problem whenever it cannot choose a mode.
            let problem =
                Problem { file, line: 1, column: 1, field: "hosts".into(), message: "cannot choose a mode".into() };
            return Err(InventoryError::Invalid { problems: vec![problem] });
        };
        let c = draft.cluster;
        let service_cidr = c.service_cidr.expect("checked");
        let hosts_path = FieldPath::default().key("hosts");
        let hosts = hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let mut host = h.expect("checked").host;
                host.line = locate(text, &hosts_path.index(i).0, false).0;
                host
            })
            .collect();
        Ok(Inventory {
            file: path.to_path_buf(),
            cluster: Cluster {
                name: c.name,
                api: Api { address: c.api_address, port: c.api_port },
                tls_san: c.tls_san,
                cluster_cidr: c.cluster_cidr.expect("checked"),
                service_cidr,
                cluster_dns: c.cluster_dns.or_else(|| service_cidr.nth(10)).expect("checked"),
                cluster_domain: c.cluster_domain,
                pod_network: c.pod_network,
                profile: c.profile,
                disable: c.disable,
                images: c.images,
                registries: c.registries,
                binaries: c.binaries,
                version: c.version,
            },
            ssh: draft.ssh,
            hosts,
            mode,
            warnings: resolve(text, &file, warnings),
        })
    }

    /// Single (1 server, SQLite) or HA (3, 5 or 7 servers, etcd).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Servers in file order: the first one starts the cluster.
    pub fn servers(&self) -> impl Iterator<Item = &Host> + '_ {
        self.hosts.iter().filter(|h| h.role == Role::Server)
    }

    pub fn agents(&self) -> impl Iterator<Item = &Host> + '_ {
        self.hosts.iter().filter(|h| h.role == Role::Agent)
    }

    /// `cluster.images` as files on this machine (relative paths from the
    /// inventory's directory, `~/` from the home directory).
    pub fn image_archives(&self) -> Result<Vec<PathBuf>, String> {
        self.cluster.images.iter().map(|raw| expand_path(raw, &self.ssh.base_dir)).collect()
    }

    /// `cluster.registries` as a file on this machine (resolved as
    /// [`Inventory::image_archives`]); `None` when the inventory sets none.
    pub fn registries_file(&self) -> Result<Option<PathBuf>, String> {
        self.cluster.registries.as_deref().map(|raw| expand_path(raw, &self.ssh.base_dir)).transpose()
    }

    /// `cluster.binaries` as files on this machine (resolved as
    /// [`Inventory::image_archives`]), with their architecture.
    pub fn binary_files(&self) -> Result<Vec<(String, PathBuf)>, String> {
        self.cluster.binaries.iter().map(|(arch, raw)| Ok((arch.clone(), expand_path(raw, &self.ssh.base_dir)?))).collect()
    }

    /// The server that initializes the cluster.
    pub fn first_server(&self) -> &Host {
        self.servers().next().expect("an inventory has a server")
    }

    /// Where clients reach the API: `cluster.api.address` or the first
    /// server's address.
    pub fn api_address(&self) -> &str {
        self.cluster.api.address.as_deref().unwrap_or(&self.first_server().address)
    }

    /// `https://address:port` (IPv6 in brackets).
    pub fn api_url(&self) -> String {
        let a = self.api_address();
        match a.contains(':') {
            true => format!("https://[{a}]:{}", self.cluster.api.port),
            false => format!("https://{a}:{}", self.cluster.api.port),
        }
    }

    /// Names and IPs the API server certificate must carry beyond each
    /// server's own: the API address and `tls-san`, without repeats.
    pub fn tls_sans(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for s in self.cluster.api.address.iter().chain(&self.cluster.tls_san) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
                out.push(s.clone());
            }
        }
        out
    }

    /// Things that work but deserve a look (e.g. HA without a load
    /// balancer), with positions like errors.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }
}

/// Positions for pending problems, in file order.
fn resolve(text: &str, file: &str, pending: Vec<Pending>) -> Vec<Problem> {
    let mut out: Vec<Problem> = pending
        .into_iter()
        .map(|p| {
            let (line, column) = locate(text, &p.path.0, p.at_key);
            Problem { file: file.to_string(), line, column, field: p.path.to_string(), message: p.message }
        })
        .collect();
    out.sort_by_key(|p| (p.line, p.column));
    out.dedup();
    out
}

/// A problem from the YAML parser itself.
fn yaml_problem(file: &str, text: &str, e: &serde_yaml::Error) -> Problem {
    let mut message = e.to_string();
    let (line, column) = match e.location() {
        Some(l) => {
            message = message.replacen(&format!(" at line {} column {}", l.line(), l.column()), "", 1);
            (l.line(), l.column())
        }
        None => (second_document(text).unwrap_or(1), 1),
    };
    let (mut line, mut column, mut field) = (line, column, String::new());
    if let Some((before, key)) = message.split_once("duplicate entry with key ") {
        let key = key.trim_matches('"').to_string();
        field = before.trim_end_matches(": ").to_string();
        if let Some((l, c)) = repeated_key(text, line, column, &key) {
            (line, column) = (l, c);
        }
        message = format!("the key {key:?} is written twice in this mapping; keep one");
    }
    if message.contains("more than one document") {
        message = "the file holds more than one YAML document (a `---` line between them); keep one".into();
    }
    let tab_near = text.lines().nth(line.saturating_sub(1)).is_some_and(|l| l.contains('\t'));
    if tab_near {
        message.push_str(" (YAML indents with spaces, not tabs)");
    }
    Problem { file: file.to_string(), line, column, field, message }
}

/// The line of a `---` that starts a second document.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with("---") && content {
            return Some(i + 1);
        }
        let t = l.trim();
        if !t.is_empty() && !t.starts_with('#') && !l.starts_with("---") && !l.starts_with("%") {
            content = true;
        }
    }
    None
}

/// Where `key` is written the second time in the block mapping that starts
/// at `line`:`column` (serde_yaml reports a repeated key at the mapping).
fn repeated_key(text: &str, line: usize, column: usize, key: &str) -> Option<(usize, usize)> {
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(line - 1) {
        let chars: Vec<char> = l.chars().collect();
        let indent = chars.iter().take_while(|c| **c == ' ' || **c == '-').count();
        let content = chars.iter().skip(indent).collect::<String>();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if i + 1 > line && indent + 1 < column {
            return None; // the mapping ended
        }
        if indent + 1 != column {
            continue;
        }
        let name = content.split(':').next().unwrap_or_default().trim().trim_matches(['"', '\'']);
        if name == key && content.contains(':') {
            seen += 1;
            if seen == 2 {
                return Some((i + 1, column));
            }
        }
    }
    None
}

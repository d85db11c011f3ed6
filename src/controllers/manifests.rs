//! Auto-deployed manifests: the files of `<data-dir>/server/manifests/`
//! (k3s's directory of the same name) applied to the cluster and kept so.
//!
//! Lifecycle (one [`Deployer`] per server, an in-process service):
//!
//! ```text
//! start ── sync ── every WATCH_INTERVAL: sync ──► …
//! sync:  each *.yaml / *.yml / *.json file, in name order
//!          content not applied by this process yet (every file at start, then new or edited ones)
//!            → parse (an error names the file, the document, the line) → server-side apply each object
//!            → delete the objects the file's last applied version had and this one lacks
//!            → record the file's objects (server/manifests-applied.json)
//!        each recorded file gone from the directory → delete its objects (newest first) → forget it
//! ```
//!
//! A file that fails (bad YAML, a kind not served yet, a rejected object) is
//! applied again at every sync until it succeeds, and nothing it applied
//! before is deleted meanwhile; its error is logged once per distinct
//! message. Only what this server applied is ever deleted: the record is
//! local, so in an HA cluster each server prunes its own directory's
//! objects (give every server the same files). The built-in addons live
//! here too (the server writes them at start; `disable` removes them, and so
//! their objects).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kube::api::DynamicObject;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kubeclient;

/// How often the directory is read again: the files are small, and a user
/// who drops one in expects to see it applied soon.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The file kinds applied; anything else in the directory (a `.skip`, an
/// editor's backup) is left alone.
const SUFFIXES: [&str; 3] = [".yaml", ".yml", ".json"];

/// One object a manifest file applied, as recorded for pruning.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    fn of(object: &DynamicObject) -> ObjectRef {
        let types = object.types.clone().unwrap_or_default();
        ObjectRef { api_version: types.api_version, kind: types.kind, namespace: object.namespace(), name: object.name_any() }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What this server applied, per file name: kept across restarts so a file
/// removed while the server was down still has its objects deleted.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct Record {
    files: BTreeMap<String, Vec<ObjectRef>>,
}

impl Record {
    /// The objects of every file but `name`: an object that moved to another
    /// file is not deleted with the one it left.
    fn others(&self, name: &str) -> Vec<ObjectRef> {
        self.files.iter().filter(|(file, _)| file.as_str() != name).flat_map(|(_, objects)| objects.iter().cloned()).collect()
    }
}

/// A manifest file as read: its name in the directory, content and hash.
struct File {
    name: String,
    text: String,
    sha256: String,
}

/// Applies the manifests directory; see the module doc.
pub struct Deployer {
    client: Client,
    dir: PathBuf,
    record_file: PathBuf,
    /// Each file's content hash as applied by this process.
    applied: HashMap<String, String>,
    /// Each failing file's last logged error, so a sync logs only news.
    failing: HashMap<String, String>,
}

impl Deployer {
    pub fn new(client: Client, dir: &Path, record_file: &Path) -> Deployer {
        Deployer { client, dir: dir.into(), record_file: record_file.into(), applied: HashMap::new(), failing: HashMap::new() }
    }

    /// Applies and prunes until stopped, logging each failure once.
    pub async fn run(mut self) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            for (name, error) in self.sync().await {
                self.report(&name, &error);
            }
        }
    }

    /// One pass over the directory; returns the files that failed, with
    /// their errors (logged by the caller: [`Deployer::report`]).
    pub async fn sync(&mut self) -> Vec<(String, String)> {
        let mut record = self.read_record();
        let mut failed = Vec::new();
        let files = match read_dir(&self.dir) {
            Ok(files) => files,
            Err(e) => return vec![(self.dir.display().to_string(), format!("{e:#}"))],
        };
        for file in &files {
            if self.applied.get(&file.name) == Some(&file.sha256) {
                continue;
            }
            let before = record.files.get(&file.name).cloned().unwrap_or_default();
            match self.deploy(file, &before, &record.others(&file.name)).await {
                Ok(objects) => {
                    tracing::info!(manifest = %self.dir.join(&file.name).display(), objects = objects.len(), "manifest applied");
                    self.failing.remove(&file.name);
                    self.applied.insert(file.name.clone(), file.sha256.clone());
                    record.files.insert(file.name.clone(), objects);
                }
                Err(e) => failed.push((file.name.clone(), format!("{e:#}"))),
            }
        }
        let gone: Vec<String> = record.files.keys().filter(|name| !files.iter().any(|f| &f.name == *name)).cloned().collect();
        for name in gone {
            match self.prune(&record.files[&name], &record.others(&name)).await {
                Ok(()) => {
                    tracing::info!(manifest = %self.dir.join(&name).display(), "manifest removed: its objects deleted");
                    self.failing.remove(&name);
                    self.applied.remove(&name);
                    record.files.remove(&name);
                }
                Err(e) => failed.push((name, format!("{e:#}"))),
            }
        }
        if let Err(e) = self.write_record(&record) {
            failed.push((self.record_file.display().to_string(), format!("{e:#}")));
        }
        failed
    }

    /// Applies a file's objects, then deletes those its previous version
    /// had and neither it nor another file (`others`) has; returns the
    /// objects it applied.
    async fn deploy(&self, file: &File, before: &[ObjectRef], others: &[ObjectRef]) -> anyhow::Result<Vec<ObjectRef>> {
        let objects = kubeclient::parse_manifest(&file.text)?;
        for object in &objects {
            kubeclient::apply_object(&self.client, object).await?;
        }
        let now: Vec<ObjectRef> = objects.iter().map(ObjectRef::of).collect();
        let keep: Vec<ObjectRef> = now.iter().chain(others).cloned().collect();
        self.prune(before, &keep).await?;
        Ok(now)
    }

    /// Deletes the objects of `before` not in `keep`, newest first (a
    /// custom resource before its definition, objects before their namespace).
    async fn prune(&self, before: &[ObjectRef], keep: &[ObjectRef]) -> anyhow::Result<()> {
        for object in before.iter().rev().filter(|o| !keep.contains(o)) {
            let deleted = kubeclient::delete_object(&self.client, &object.api_version, &object.kind, object.namespace.as_deref(), &object.name).await?;
            if deleted {
                tracing::info!(object = %object, "deleted: no longer in the manifests directory");
            }
        }
        Ok(())
    }

    /// Logs a file's failure, unless it is the one last logged for it.
    pub fn report(&mut self, name: &str, error: &str) {
        if self.failing.get(name).map(String::as_str) != Some(error) {
            tracing::warn!(manifest = %self.dir.join(name).display(), "manifest not applied: {error}; fix the file (it is tried again every {}s)", WATCH_INTERVAL.as_secs());
            self.failing.insert(name.to_string(), error.to_string());
        }
    }

    /// The record, or an empty one when there is none or it is unreadable
    /// (then nothing is pruned that the lost record named: logged).
    fn read_record(&self) -> Record {
        match std::fs::read(&self.record_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %self.record_file.display(), "unreadable record of applied manifests ({e}); starting a new one: objects of files removed before now are not deleted");
                Record::default()
            }),
            Err(_) => Record::default(),
        }
    }

    fn write_record(&self, record: &Record) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(record)?;
        crate::fsutil::write_if_changed(&self.record_file, &json, 0o600)?;
        Ok(())
    }
}

/// The manifest files of `dir`, in name order (an absent dir has none).
fn read_dir(dir: &Path) -> anyhow::Result<Vec<File>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the manifests directory {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_manifest(&name) || !entry.file_type()?.is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).with_context(|| format!("cannot read {}", entry.path().display()))?;
        let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", entry.path().display()))?;
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        files.push(File { name, text, sha256 });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Manifest files by name: hidden files (an editor's or an atomic writer's
/// temporary) are not.
fn is_manifest(name: &str) -> bool {
    !name.starts_with('.') && SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_files_by_name() {
        for name in ["a.yaml", "b.yml", "c.json", "coredns.yaml"] {
            assert!(is_manifest(name), "{name}");
        }
        for name in ["a.yaml.skip", ".a.yaml.123.tmp", "a.txt", "README", "a.yaml~"] {
            assert!(!is_manifest(name), "{name}");
        }
    }

    #[test]
    fn files_are_read_in_name_order_and_others_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("b.yaml", "b"), ("a.json", "{}"), ("c.skip", "c"), (".d.yaml", "d")] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::create_dir(dir.path().join("e.yaml")).unwrap();
        let files = read_dir(dir.path()).unwrap();
        assert_eq!(files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a.json", "b.yaml"]);
        assert_ne!(files[0].sha256, files[1].sha256);
        assert!(read_dir(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn object_refs_name_what_pruning_deletes() {
        let objects = kubeclient::parse_manifest(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: demo}\n",
        )
        .unwrap();
        let refs: Vec<ObjectRef> = objects.iter().map(ObjectRef::of).collect();
        assert_eq!(refs[0], ObjectRef { api_version: "v1".into(), kind: "Namespace".into(), namespace: None, name: "demo".into() });
        assert_eq!(refs[1].to_string(), "Deployment demo/web");
        let record = Record { files: [("demo.yaml".to_string(), refs.clone())].into() };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""apiVersion":"apps/v1""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        let mut moved = record;
        moved.files.insert("renamed.yaml".into(), refs[1..].to_vec());
        assert_eq!(moved.others("demo.yaml"), refs[1..].to_vec());
        assert_eq!(moved.others("renamed.yaml"), refs);
    }

    #[test]
    fn parse_errors_name_the_document_and_line() {
        let e = kubeclient::parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n").unwrap_err().to_string();
        assert!(e.starts_with("document 2:") && e.contains("line"), "{e}");
        let e = kubeclient::parse_manifest("apiVersion: v1\nkind: ConfigMap\n").unwrap_err().to_string();
        assert!(e.contains("document 1") && e.contains("metadata.name"), "{e}");
        let e = kubeclient::parse_manifest("- a\n- b\n").unwrap_err().to_string();
        assert!(e.contains("document 1 is not a Kubernetes object"), "{e}");
        assert!(kubeclient::parse_manifest("# only a comment\n").unwrap().is_empty());
        assert_eq!(kubeclient::parse_manifest(r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}"#).unwrap().len(), 1);
    }
}

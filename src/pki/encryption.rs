//! Secrets encryption at rest: the API server's EncryptionConfiguration,
//! `<pki>/encryption-config.yaml` (0600), one secretbox key (XSalsa20 +
//! Poly1305, 32 random bytes) for Secrets, then `identity` so Secrets
//! written before encryption was on stay readable.
//!
//! Every server of a cluster must hold the same keys: the file is created
//! when a cluster starts (a single server, or the first server of a new HA
//! cluster) and sent to joining servers with the shared PKI. An HA cluster
//! created before this file existed keeps running without it (a key made on
//! one server alone would make its Secrets unreadable on the others).

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::{Pki, PkiError};

/// The prefix the API server writes before encrypted values.
pub const STORED_PREFIX: &str = "k8s:enc:secretbox:v1:";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    api_version: String,
    kind: String,
    resources: Vec<Resources>,
}

#[derive(Serialize, Deserialize)]
struct Resources {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

/// One provider: a map with one key, as the API server reads it
/// (`secretbox: {keys: [...]}` or `identity: {}`).
#[derive(Default, Serialize, Deserialize)]
struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretbox: Option<Keys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<Empty>,
}

#[derive(Serialize, Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

#[derive(Serialize, Deserialize)]
struct Empty {}

#[derive(Serialize, Deserialize)]
struct Key {
    name: String,
    secret: String,
}

impl Pki {
    /// The API server's encryption provider config.
    pub fn encryption_config(&self) -> PathBuf {
        self.file("encryption-config.yaml")
    }
}

/// Writes a config with one new key unless there is one; whether it wrote.
pub fn ensure(pki: &Pki) -> Result<bool, PkiError> {
    let path = pki.encryption_config();
    if path.exists() {
        key_names(&path)?;
        return Ok(false);
    }
    let config = Config {
        api_version: "apiserver.config.k8s.io/v1".into(),
        kind: "EncryptionConfiguration".into(),
        resources: vec![Resources {
            resources: vec!["secrets".into()],
            providers: vec![
                Provider { secretbox: Some(Keys { keys: vec![new_key()?] }), ..Default::default() },
                Provider { identity: Some(Empty {}), ..Default::default() },
            ],
        }],
    };
    write(&path, &EncryptionConfig(config))?;
    Ok(true)
}

/// An encryption config in memory: what a server writes to its file and
/// what a rotation publishes to every server.
pub struct EncryptionConfig(Config);

impl EncryptionConfig {
    /// Reads YAML this k8s wrote; `origin` names where it came from.
    pub fn parse(yaml: &[u8], origin: &Path) -> Result<EncryptionConfig, PkiError> {
        let config: Config = serde_yaml::from_slice(yaml)
            .map_err(|e| PkiError::invalid(origin, format!("is not an encryption config this k8s wrote ({e})"), "restore it from a backup"))?;
        let config = EncryptionConfig(config);
        if config.key_names().is_empty() {
            return Err(PkiError::invalid(origin, "holds no secretbox key".into(), "restore it from a backup"));
        }
        Ok(config)
    }

    pub fn to_yaml(&self) -> Vec<u8> {
        serde_yaml::to_string(&self.0).expect("the config serializes").into_bytes()
    }

    /// The names of the keys, the one new writes use first.
    pub fn key_names(&self) -> Vec<String> {
        self.0
            .resources
            .iter()
            .flat_map(|r| &r.providers)
            .filter_map(|p| p.secretbox.as_ref())
            .flat_map(|s| s.keys.iter().map(|k| k.name.clone()))
            .collect()
    }

    /// The next step of a key rotation from this config (see [`Rotation`]).
    pub fn rotation(&self, servers: usize) -> Rotation {
        let names = self.key_names();
        let newest = names.iter().max_by_key(|n| made_at(n)).cloned().unwrap_or_default();
        match names.len() {
            0 | 1 if servers > 1 => Rotation::AddReader,
            0 | 1 => Rotation::AddWriter,
            _ if names[0] != newest => Rotation::MakeWriter(newest),
            _ => Rotation::DropOld(newest),
        }
    }

    /// Applies one step of a rotation, except the rewrite that must come
    /// before [`Rotation::DropOld`]: the changed config, and the key the
    /// step is about.
    pub fn apply(&self, step: &Rotation) -> Result<(EncryptionConfig, String), PkiError> {
        let mut config = EncryptionConfig(serde_yaml::from_slice(&self.to_yaml()).expect("a config reads back"));
        let keys = &mut config.secretbox().keys;
        let name = match step {
            Rotation::AddReader | Rotation::AddWriter => {
                let key = new_key()?;
                let name = key.name.clone();
                match step {
                    Rotation::AddReader => keys.push(key),
                    _ => keys.insert(0, key),
                }
                name
            }
            Rotation::MakeWriter(name) => {
                let at = keys.iter().position(|k| &k.name == name).expect("the key is in the config it was planned from");
                let key = keys.remove(at);
                keys.insert(0, key);
                name.clone()
            }
            Rotation::DropOld(name) => {
                keys.truncate(1);
                name.clone()
            }
        };
        Ok((config, name))
    }

    fn secretbox(&mut self) -> &mut Keys {
        self.0
            .resources
            .iter_mut()
            .flat_map(|r| r.providers.iter_mut())
            .find_map(|p| p.secretbox.as_mut())
            .expect("parse checked there is a secretbox key")
    }
}

/// A key rotation goes through these steps, each one loaded by every API
/// server before the next is published; which comes next follows from the
/// keys alone, so a rotation that stopped continues where it was.
///
/// ```text
/// [old] ──AddReader──► [old, new] ──MakeWriter──► [new, old] ──(rewrite every Secret)──DropOld──► [new]
///   └────AddWriter (one server: no other API server to wait for)──► [new, old]
/// ```
/// A new key must be readable by every API server before any writes with
/// it, or a Secret written through one server is unreadable through another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    AddReader,
    AddWriter,
    MakeWriter(String),
    DropOld(String),
}

/// When a key was made, from its name (`k8s-<unix seconds>-<tag>`); keys
/// named otherwise count as oldest.
fn made_at(name: &str) -> u64 {
    name.strip_prefix("k8s-").and_then(|r| r.split('-').next()).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// Reads a config file.
pub fn read(path: &Path) -> Result<EncryptionConfig, PkiError> {
    let yaml = std::fs::read(path).map_err(|e| PkiError::io(path, "read", e))?;
    EncryptionConfig::parse(&yaml, path)
}

/// Writes a config file (0600, atomically).
pub fn write(path: &Path, config: &EncryptionConfig) -> Result<(), PkiError> {
    super::files::write_atomic(path, &config.to_yaml(), 0o600)
}

/// The names of the keys in a config file, the one new writes use first.
pub fn key_names(path: &Path) -> Result<Vec<String>, PkiError> {
    Ok(read(path)?.key_names())
}

fn new_key() -> Result<Key, PkiError> {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).map_err(|_| PkiError::params("encryption key", "the system has no randomness".into()))?;
    let mut tag = [0u8; 4];
    SystemRandom::new().fill(&mut tag).map_err(|_| PkiError::params("encryption key", "the system has no randomness".into()))?;
    // When it was made, for people and for the rotation's order; a random
    // tag, so two keys made in the same second still differ.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Ok(Key { name: format!("k8s-{now}-{}", hex::encode(tag)), secret: base64::engine::general_purpose::STANDARD.encode(secret) })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn one_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir: dir.path().to_path_buf() };
        assert!(ensure(&pki).unwrap(), "a new config");
        let path = pki.encryption_config();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!ensure(&pki).unwrap(), "kept");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "not a byte changed");
        let names = key_names(&path).unwrap();
        assert_eq!(names.len(), 1);
        let config: Config = serde_yaml::from_str(&text).unwrap();
        let keys = &config.resources[0].providers[0].secretbox.as_ref().unwrap().keys;
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&keys[0].secret).unwrap().len(), 32);
        assert!(config.resources[0].providers[1].identity.is_some(), "older plain Secrets stay readable");
        // The shape the API server decodes strictly.
        let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(value["apiVersion"].as_str(), Some("apiserver.config.k8s.io/v1"));
        assert_eq!(value["kind"].as_str(), Some("EncryptionConfiguration"));
        let providers = &value["resources"][0]["providers"];
        assert_eq!(value["resources"][0]["resources"][0].as_str(), Some("secrets"));
        assert!(providers[0]["secretbox"]["keys"][0]["name"].as_str().unwrap().starts_with("k8s-"), "{text}");
        assert!(providers[1]["identity"].as_mapping().is_some_and(|m| m.is_empty()), "{text}");
        assert!(!text.contains('!'), "no YAML tags: {text}");
        let config = read(&path).unwrap();
        let (reader, second) = config.apply(&Rotation::AddReader).unwrap();
        assert_eq!(reader.key_names(), [names[0].clone(), second.clone()], "a reader: last, the old key still writes");
        let (writer, _) = reader.apply(&Rotation::MakeWriter(second.clone())).unwrap();
        assert_eq!(writer.key_names(), [second.clone(), names[0].clone()], "the new key writes, the old one still reads");
        let (done, _) = writer.apply(&Rotation::DropOld(second.clone())).unwrap();
        assert_eq!(done.key_names(), [second]);
        let value: serde_yaml::Value = serde_yaml::from_slice(&done.to_yaml()).unwrap();
        assert!(value["resources"][0]["providers"][1]["identity"].is_mapping(), "identity stays last");
        let (one, third) = config.apply(&Rotation::AddWriter).unwrap();
        assert_eq!(one.key_names(), [third, names[0].clone()], "one server: the new key writes at once");
        std::fs::write(&path, "kind: Other\n").unwrap();
        assert!(ensure(&pki).unwrap_err().to_string().contains("restore it from a backup"));
    }

    fn config_with(names: &[&str]) -> EncryptionConfig {
        let keys = names.iter().map(|n| format!("      - name: {n}\n        secret: c2VjcmV0\n")).collect::<String>();
        let yaml = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n{keys}  - identity: {{}}\n"
        );
        EncryptionConfig::parse(yaml.as_bytes(), Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn a_rotation_continues_from_where_its_keys_are() {
        let (old, new) = ("k8s-1700000000-aa", "k8s-1800000000-bb");
        assert_eq!(config_with(&[old]).rotation(3), Rotation::AddReader);
        assert_eq!(config_with(&[old]).rotation(1), Rotation::AddWriter);
        assert_eq!(config_with(&[old, new]).rotation(3), Rotation::MakeWriter(new.into()));
        assert_eq!(config_with(&[new, old]).rotation(3), Rotation::DropOld(new.into()));
        assert_eq!(config_with(&[new, old]).rotation(1), Rotation::DropOld(new.into()));
        // A key named by someone else counts as the oldest.
        assert_eq!(config_with(&["mine", new]).rotation(3), Rotation::MakeWriter(new.into()));
        let err = EncryptionConfig::parse(b"apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n", Path::new("x.yaml")).err().unwrap();
        assert!(err.to_string().contains("no secretbox key"), "{err}");
    }
}

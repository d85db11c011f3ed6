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
    write(&path, &config)?;
    Ok(true)
}

/// Puts a new key first (new writes use it) and keeps the others after it
/// (what was written with them stays readable); returns its name.
pub fn add_key(pki: &Pki) -> Result<String, PkiError> {
    let path = pki.encryption_config();
    let mut config = read(&path)?;
    let key = new_key()?;
    let name = key.name.clone();
    let keys = &mut secretbox(&mut config, &path)?.keys;
    if keys.iter().any(|k| k.name == name) {
        return Err(PkiError::invalid(&path, format!("already has a key named {name}"), "run it again"));
    }
    keys.insert(0, key);
    write(&path, &config)?;
    Ok(name)
}

/// Drops every key but the first (once nothing is stored under them).
pub fn drop_old_keys(pki: &Pki) -> Result<Vec<String>, PkiError> {
    let path = pki.encryption_config();
    let mut config = read(&path)?;
    let keys = &mut secretbox(&mut config, &path)?.keys;
    let dropped = keys.drain(1..).map(|k| k.name).collect();
    write(&path, &config)?;
    Ok(dropped)
}

fn read(path: &Path) -> Result<Config, PkiError> {
    let text = std::fs::read_to_string(path).map_err(|e| PkiError::io(path, "read", e))?;
    serde_yaml::from_str(&text)
        .map_err(|e| PkiError::invalid(path, format!("is not an encryption config this k8s wrote ({e})"), "restore it from a backup"))
}

fn write(path: &Path, config: &Config) -> Result<(), PkiError> {
    let yaml = serde_yaml::to_string(config).expect("the config serializes");
    super::files::write_atomic(path, yaml.as_bytes(), 0o600)
}

fn secretbox<'a>(config: &'a mut Config, path: &Path) -> Result<&'a mut Keys, PkiError> {
    config
        .resources
        .iter_mut()
        .flat_map(|r| r.providers.iter_mut())
        .find_map(|p| p.secretbox.as_mut())
        .ok_or_else(|| PkiError::invalid(path, "holds no secretbox key".into(), "restore it from a backup"))
}

/// The names of the keys, the one new writes use first.
pub fn key_names(path: &Path) -> Result<Vec<String>, PkiError> {
    let config = read(path)?;
    let names = config
        .resources
        .iter()
        .flat_map(|r| &r.providers)
        .filter_map(|p| p.secretbox.as_ref())
        .flat_map(|s| s.keys.iter().map(|k| k.name.clone()))
        .collect::<Vec<_>>();
    if names.is_empty() {
        return Err(PkiError::invalid(path, "holds no secretbox key".into(), "restore it from a backup"));
    }
    Ok(names)
}

fn new_key() -> Result<Key, PkiError> {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).map_err(|_| PkiError::params("encryption key", "the system has no randomness".into()))?;
    let mut tag = [0u8; 4];
    SystemRandom::new().fill(&mut tag).map_err(|_| PkiError::params("encryption key", "the system has no randomness".into()))?;
    // When it was made, for people; a random tag, so two keys made in the
    // same second still differ.
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
        let second = add_key(&pki).unwrap();
        assert_eq!(key_names(&path).unwrap(), [second.clone(), names[0].clone()], "the new key first, the old one kept");
        assert_eq!(drop_old_keys(&pki).unwrap(), [names[0].clone()]);
        assert_eq!(key_names(&path).unwrap(), [second]);
        let value: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(value["resources"][0]["providers"][1]["identity"].is_mapping(), "identity stays last");
        std::fs::write(&path, "kind: Other\n").unwrap();
        assert!(ensure(&pki).unwrap_err().to_string().contains("restore it from a backup"));
    }
}

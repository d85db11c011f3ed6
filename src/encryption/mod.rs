//! The Secrets encryption config every server of a cluster follows, so a
//! key rotation changes all API servers in step (the file itself, its keys
//! and the steps of a rotation: [`crate::pki::encryption`]).
//!
//! Lifecycle:
//!
//! ```text
//! cluster start   first server writes <pki>/encryption-config.yaml; joiners get it with the shared PKI
//! every server    follower (in-process service): watches Secret kube-system/k8s-encryption-config;
//!                 when it differs from the file, writes the file (0600); the API server reloads it
//!                 by itself (it looks once a minute); when the API server's /metrics report the
//!                 file's hash as loaded, the follower writes that hash under the server's name in
//!                 ConfigMap kube-system/k8s-encryption-status
//! rotate-keys     (any server) publishes one step of the rotation in the Secret, waits until every
//!                 server (HA: every etcd member; single: this one) reports it loaded, then the next;
//!                 before dropping the old keys, rewrites every Secret and reads the stored values
//!                 back from the datastore to check each is under the new key
//! ```
//!
//! The Secret holds the keys, so it is stored encrypted like every Secret,
//! and only those who may read Secrets in kube-system (who could read every
//! Secret anyway) can read it. A server that was down for a whole rotation
//! cannot read it (its keys were dropped): a rotation therefore starts only
//! when every server is up, and waits for each one at every step.

mod follower;
pub mod rotation;

use std::time::Duration;

use anyhow::Context;
use sha2::Digest;

pub use follower::Follower;

/// The desired config, as `data[CONFIG_KEY]`.
pub const DESIRED: &str = "k8s-encryption-config";
pub const CONFIG_KEY: &str = "encryption-config.yaml";
/// What each server's API server has loaded: `data[<server name>] = <hash>`.
pub const LOADED: &str = "k8s-encryption-status";
pub const NAMESPACE: &str = "kube-system";

/// How long an API server may take to load a changed file: it looks once a
/// minute (upstream's `EncryptionConfigFileChangePollDuration`).
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(150);

/// The hash the API server reports for a config: sha256 of the file's bytes.
pub fn hash(yaml: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(yaml)))
}

/// The hash of the encryption config the API server behind `client` has
/// loaded, from its metrics; none when it reports none.
pub async fn loaded_hash(client: &kube::Client) -> anyhow::Result<Option<String>> {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("a static request is valid");
    let text = tokio::time::timeout(Duration::from_secs(20), client.request_text(request))
        .await
        .context("the API server's /metrics did not answer in 20 s")?
        .context("reading the API server's /metrics")?;
    Ok(hash_in_metrics(&text))
}

/// `apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="…",hash="sha256:…"} 1`
fn hash_in_metrics(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("apiserver_encryption_config_controller_last_config_info{"))?;
    let labels = &line[line.find('{')? + 1..line.find('}')?];
    labels.split(',').find_map(|l| l.strip_prefix("hash=\"")?.strip_suffix('"').map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaded_hash_is_read_from_the_metrics() {
        let text = "# HELP apiserver_encryption_config_controller_last_config_info [ALPHA] Information\n\
            # TYPE apiserver_encryption_config_controller_last_config_info gauge\n\
            apiserver_encryption_config_controller_last_config_info{apiserver_id_hash=\"sha256:aa\",hash=\"sha256:bb\"} 1\n\
            apiserver_request_total{code=\"200\"} 4\n";
        assert_eq!(hash_in_metrics(text).as_deref(), Some("sha256:bb"));
        assert_eq!(hash_in_metrics("apiserver_request_total{code=\"200\"} 4\n"), None);
        assert_eq!(hash(b"x"), "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
    }
}

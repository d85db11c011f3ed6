//! The kubelet's client certificate (`system:node:<name>`) and its renewal
//! through the CSR API.
//!
//! Lifecycle:
//! 1. The cluster issues the first one: a server's PKI makes it (and renews
//!    it at a start inside the renewal window), an agent gets it at its join.
//!    It stays where it was issued (the "issued" kubeconfig).
//! 2. At every node start, [`seed`] puts the issued pair in the kubelet's
//!    certificate store (`--cert-dir`) when the store holds no readable
//!    pair, one from another CA, or one that ends sooner; otherwise the
//!    store's pair stays.
//! 3. The kubelet (`rotateCertificates: true`) asks for a new pair at 70–90 %
//!    of the current one's life: a CertificateSigningRequest for the signer
//!    `kubernetes.io/kube-apiserver-client-kubelet`, which the
//!    controller-manager approves (nodes may ask for their own:
//!    `templates/addons/node-certificates.yaml`) and signs with the cluster
//!    CA. The new pair becomes `kubelet-client-current.pem`.
//! 4. Everything on the node reads the store through one kubeconfig
//!    ([`Paths::kubelet_kubeconfig`]): the kubelet, and `k8s`'s own clients,
//!    which load the current pair for every new connection
//!    ([`crate::kubeclient::client`]), so a renewal needs no restart.

use std::path::Path;

use anyhow::Context;
use time::OffsetDateTime;

use crate::fsutil::{write_atomic, write_if_changed};
use crate::host::layout::NodePaths as Paths;
use crate::pki;

/// Puts the issued pair in the kubelet's certificate store when the store
/// needs it (see the module doc), and writes the node's kubelet kubeconfig.
pub fn seed(issued_kubeconfig: &Path, p: &Paths) -> anyhow::Result<()> {
    let what = issued_kubeconfig.display();
    let text = std::fs::read_to_string(issued_kubeconfig).with_context(|| format!("cannot read {what}"))?;
    let issued = pki::read_embedded(&text).with_context(|| format!("{what} holds no client certificate and key"))?;
    let current = p.kubelet_client_current();
    let held = std::fs::read_to_string(&current).ok();
    if let Some(reason) = reseed_reason(&issued.cert_pem, held.as_deref()) {
        store(p, &issued)?;
        tracing::info!(store = %p.kubelet_client_dir.display(), "kubelet client certificate: {reason}; the issued one is current");
    }
    let kubeconfig = pki::render_with_files(&issued.server, &issued.ca_pem, "kubelet", &current)?;
    write_if_changed(&p.kubelet_kubeconfig, kubeconfig.as_bytes(), 0o600)?;
    Ok(())
}

/// Why the store's pair (`held`, the PEM text of its current file) gives
/// way to the issued one; `None`: it stays.
fn reseed_reason(issued_pem: &str, held: Option<&str>) -> Option<&'static str> {
    let Some(held) = held else {
        return Some("the store has none yet");
    };
    let (Some(h), Some(i)) = (pki::summarize(held), pki::summarize(issued_pem)) else {
        return Some("the store's is unreadable");
    };
    if pki::issuer_key_id(held) != pki::issuer_key_id(issued_pem) {
        return Some("the store's is from another CA");
    }
    (i.not_after > h.not_after).then_some("the issued one ends later")
}

/// Writes the issued pair as a dated file, the way the kubelet names its
/// own, and points the current link at it (a new link renamed over the old).
fn store(p: &Paths, issued: &pki::Embedded) -> anyhow::Result<()> {
    let dir = &p.kubelet_client_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::fsutil::set_mode(dir, 0o700)?;
    let t = OffsetDateTime::now_utc();
    let stamp = format!("{}-{:02}-{:02}-{:02}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second());
    let pair = dir.join(format!("kubelet-client-{stamp}.pem"));
    write_atomic(&pair, format!("{}{}", issued.cert_pem, issued.key_pem).as_bytes(), 0o600)?;
    let link = dir.join(".current.tmp");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&pair, &link).with_context(|| format!("cannot link {}", link.display()))?;
    let current = p.kubelet_client_current();
    std::fs::rename(&link, &current).with_context(|| format!("cannot replace {}", current.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki_in(dir: &Path, leaf_days: &str) -> pki::Pki {
        let params = pki::PkiParams {
            dir: dir.to_path_buf(),
            node_name: "n1".into(),
            apiserver_sans: vec!["127.0.0.1".into()],
            kubelet_sans: vec!["127.0.0.1".into()],
            etcd_sans: None,
        };
        pki::ensure_with(&params, &pki::Lifetimes::with_leaf_days(leaf_days).unwrap()).unwrap()
    }

    fn kubelet_cert(pki: &pki::Pki) -> String {
        pki::issue_client(pki, "system:node:n1", Some("system:nodes")).unwrap().cert_pem
    }

    #[test]
    fn the_store_keeps_a_pair_that_ends_no_sooner_from_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki_in(tmp.path(), "10");
        let ten_days = std::fs::read_to_string(pki.apiserver_kubelet_client_cert()).unwrap();
        let a_year = kubelet_cert(&pki);
        assert_eq!(reseed_reason(&a_year, None), Some("the store has none yet"));
        assert_eq!(reseed_reason(&a_year, Some("garbage")), Some("the store's is unreadable"));
        assert_eq!(reseed_reason(&a_year, Some(&ten_days)), Some("the issued one ends later"));
        assert_eq!(reseed_reason(&ten_days, Some(&a_year)), None);
        assert_eq!(reseed_reason(&a_year, Some(&a_year)), None);
    }

    #[test]
    fn a_pair_from_another_ca_gives_way() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ours, theirs) = (kubelet_cert(&pki_in(one.path(), "10")), kubelet_cert(&pki_in(two.path(), "10")));
        assert_eq!(reseed_reason(&ours, Some(&theirs)), Some("the store's is from another CA"));
    }

    #[test]
    fn seeding_links_the_issued_pair_and_writes_a_kubeconfig_that_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = pki_in(&tmp.path().join("pki"), "10");
        let issued = pki::issue_client(&pki, "system:node:n1", Some("system:nodes")).unwrap();
        let ca = std::fs::read_to_string(pki.ca_cert()).unwrap();
        let issued_kubeconfig = tmp.path().join("issued.kubeconfig");
        std::fs::write(&issued_kubeconfig, pki::render_kubeconfig(&ca, "https://127.0.0.1:6443", "kubelet", &issued).unwrap()).unwrap();
        let layout = crate::host::Layout::new(&tmp.path().join("data"));
        let p = layout.node();
        seed(&issued_kubeconfig, &p).unwrap();
        let current = p.kubelet_client_current();
        assert!(std::fs::symlink_metadata(&current).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&current).unwrap(), format!("{}{}", issued.cert_pem, issued.key_pem));
        let kubeconfig = std::fs::read_to_string(&p.kubelet_kubeconfig).unwrap();
        assert!(kubeconfig.contains(&format!("client-certificate: {}", current.display())), "{kubeconfig}");
        // A second start keeps the same pair: no new dated file.
        seed(&issued_kubeconfig, &p).unwrap();
        assert_eq!(std::fs::read_dir(&p.kubelet_client_dir).unwrap().count(), 2);
    }
}

//! A k8s binary file of any architecture, inspected without running it:
//! `k8s up` installs, and `k8s upgrade apply` rolls out, binaries built for
//! other machines than the one they run on (amd64 and arm64 hosts in one
//! cluster). What identifies one: its ELF machine, its release marker (the
//! k8s version, see [`RELEASE_MARKER`]) and its payload's manifest (the
//! Kubernetes version and the architecture of the parts), which must agree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::payload::{elf_arch, Payload};
use crate::version::VERSION;

/// One k8s binary with its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub path: PathBuf,
    /// Go's name of its architecture (`amd64`, `arm64`).
    pub arch: &'static str,
    /// The k8s version.
    pub version: String,
    /// The Kubernetes version of the parts it carries.
    pub kubernetes: String,
    pub sha256: String,
    pub size: u64,
}

/// Reads `path` as a k8s binary: an executable for amd64 or arm64 with a
/// release marker and a payload built for the same architecture.
pub fn inspect(path: &Path) -> anyhow::Result<Release> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let arch = elf_arch(&data).with_context(|| format!("{} is not a Linux executable for amd64 or arm64", path.display()))?;
    let payload = Payload::of(path)?
        .with_context(|| format!("{} carries no components (a plain cargo build?); use the one `make dist` builds", path.display()))?;
    let manifest = payload.manifest()?;
    if manifest.arch != arch {
        bail!("{} is an {arch} executable carrying {} components; build it again (make dist ARCH={arch})", path.display(), manifest.arch);
    }
    let executable = &data[..(payload.offset() as usize).min(data.len())];
    let version = release_of(executable)
        .with_context(|| format!("{} has no k8s release marker (a k8s binary older than arm64 support?)", path.display()))?;
    let sha256 = hex::encode(Sha256::digest(&data));
    Ok(Release { path: path.to_path_buf(), arch, version, kubernetes: manifest.kubernetes_version, sha256, size: data.len() as u64 })
}

/// Checks that `other` is the same k8s as `this` (version and Kubernetes),
/// built for another architecture.
pub fn check_same_release(this: &Release, other: &Release) -> anyhow::Result<()> {
    if (other.version.as_str(), other.kubernetes.as_str()) != (this.version.as_str(), this.kubernetes.as_str()) {
        bail!(
            "{} is k8s {} (Kubernetes {}), but {} is k8s {} (Kubernetes {}); build every architecture from the same sources (make dist ARCH=...)",
            other.path.display(),
            other.version,
            other.kubernetes,
            this.path.display(),
            this.version,
            this.kubernetes
        );
    }
    Ok(())
}

/// `VERSION` between two markers in the executable's data, so that the
/// version of a binary built for another architecture is read without
/// running it ([`release_of`]).
#[used]
static RELEASE_MARKER: [u8; MARKER_LEN] = marker();
const MARKER_OPEN: &[u8] = b"\0k8s-release=";
const MARKER_CLOSE: &[u8] = b"=k8s-release\0";
const MARKER_LEN: usize = 64;

const fn marker() -> [u8; MARKER_LEN] {
    let v = VERSION.as_bytes();
    assert!(MARKER_OPEN.len() + v.len() + MARKER_CLOSE.len() <= MARKER_LEN, "K8S_VERSION is too long for the release marker");
    let mut out = [0u8; MARKER_LEN];
    let parts = [MARKER_OPEN, v, MARKER_CLOSE];
    let (mut i, mut p) = (0, 0);
    while p < parts.len() {
        let mut j = 0;
        while j < parts[p].len() {
            out[i] = parts[p][j];
            i += 1;
            j += 1;
        }
        p += 1;
    }
    out
}

/// The k8s version an executable carries, read from its release marker;
/// None without one, or with two that disagree.
pub fn release_of(executable: &[u8]) -> Option<String> {
    let mut found: Option<&[u8]> = None;
    let mut rest = executable;
    while let Some(at) = rest.windows(MARKER_OPEN.len()).position(|w| w == MARKER_OPEN) {
        rest = &rest[at + MARKER_OPEN.len()..];
        let window = &rest[..rest.len().min(MARKER_LEN)];
        let Some(end) = window.windows(MARKER_CLOSE.len()).position(|w| w == MARKER_CLOSE) else { continue };
        let v = &window[..end];
        let version_like = v.first().is_some_and(u8::is_ascii_digit) && v.iter().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(b));
        if !version_like {
            continue;
        }
        if found.is_some_and(|f| f != v) {
            return None;
        }
        found = Some(v);
    }
    found.map(|v| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binary_carries_its_release() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(release_of(&me).as_deref(), Some(VERSION));
    }

    #[test]
    fn release_marker_reading() {
        // Built at run time, so that no other marker stands in this test binary's data.
        let marked = |v: &str| [MARKER_OPEN, v.as_bytes(), MARKER_CLOSE].concat();
        let v = |a: u8, b: u8, c: u8| format!("{a}.{b}.{c}");
        assert_eq!(release_of(&[b"junk".to_vec(), marked(&v(0, 3, 1)), b"more".to_vec()].concat()), Some(v(0, 3, 1)));
        let rc = format!("{}-rc.1+abc", v(1, 2, 3));
        assert_eq!(release_of(&marked(&rc)), Some(rc));
        // An opening alone, or markers around something that is no version: no release.
        assert_eq!(release_of(&[MARKER_OPEN, &[0xff; 80], MARKER_CLOSE].concat()), None);
        assert_eq!(release_of(&marked("")), None);
        assert_eq!(release_of(&[MARKER_OPEN.to_vec(), marked(&v(0, 3, 1))].concat()), Some(v(0, 3, 1)));
        // Two different releases: not one k8s binary.
        assert_eq!(release_of(&[marked(&v(0, 3, 1)), marked(&v(0, 3, 2))].concat()), None);
        assert_eq!(release_of(b"no marker at all"), None);
    }

    #[test]
    fn a_plain_build_is_no_release() {
        let err = inspect(&std::env::current_exe().unwrap()).unwrap_err().to_string();
        assert!(err.contains("carries no components"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("script"), "#!/bin/sh\n").unwrap();
        let err = inspect(&dir.path().join("script")).unwrap_err().to_string();
        assert!(err.contains("not a Linux executable for amd64 or arm64"), "{err}");
    }
}

//! The components the binary carries (kube-apiserver, kubelet, containerd,
//! etcd, CNI plugins, node images…): found attached to our own executable,
//! verified by sha256, and extracted once to `<data-dir>/bin/<hash>/`.
//!
//! Extraction unpacks into a temporary directory and renames it into place,
//! so a killed extraction leaves nothing half-done and two processes
//! starting at once both end up using one complete copy.

mod footer;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use footer::Footer;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the components attached to {0} are damaged: {1}; download or build the binary again (make dist)")]
    Damaged(PathBuf, String),
    #[error("this k8s binary carries no components (a plain cargo build); build the full binary with `make dist` (dist/k8s), or point --components-dir at an extracted payload")]
    Missing,
    #[error("{0} has no manifest.json; is it an extracted payload?")]
    NoManifest(PathBuf),
    #[error("cannot read the manifest of {0}: {1}")]
    BadManifest(PathBuf, String),
}

/// The payload's table of contents (written by `bootstrap/`).
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub kubernetes_version: String,
    /// The machines the parts run on, in Go's names (`amd64`, `arm64`); payloads
    /// built before arm64 existed say nothing and are amd64.
    #[serde(default = "amd64")]
    pub arch: String,
    pub parts: Vec<Part>,
}

fn amd64() -> String {
    "amd64".into()
}

/// The architecture of an ELF executable, in Go's names (what a payload's
/// manifest and `uname -m`, through `arch_of_machine`, are compared with).
pub fn elf_arch(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        0x3e => Some("amd64"),
        0xb7 => Some("arm64"),
        _ => None,
    }
}

/// `uname -m`'s name of a machine in Go's names; None for one k8s is not built for.
pub fn arch_of_machine(machine: &str) -> Option<&'static str> {
    match machine {
        "x86_64" | "amd64" => Some("amd64"),
        "aarch64" | "arm64" => Some("arm64"),
        _ => None,
    }
}

/// This binary's architecture in Go's names (Rust's own name for one k8s
/// is not built for, which nothing then matches).
pub fn this_arch() -> &'static str {
    arch_of_machine(std::env::consts::ARCH).unwrap_or(std::env::consts::ARCH)
}

#[derive(Clone, Debug, Deserialize)]
pub struct Part {
    pub name: String,
    /// `binary`, `link` (another name of a multicall binary) or `image`.
    pub kind: String,
    pub path: String,
    pub version: String,
    #[serde(default)]
    pub image: Option<String>,
    /// For a link: the multicall binary it names.
    #[serde(default)]
    pub target: Option<String>,
}

/// An extracted set of components.
#[derive(Clone, Debug)]
pub struct Components {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Components {
    /// Path of an executable, e.g. `bin("kube-apiserver")`, `bin("cni/bridge")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The image reference of the carried image `name` (e.g. "pause").
    pub fn image(&self, name: &str) -> Result<String, PayloadError> {
        self.images()
            .find(|(part, _)| part.name == name)
            .and_then(|(part, _)| part.image.clone())
            .ok_or_else(|| PayloadError::BadManifest(self.dir.join("manifest.json"), format!("no {name} image")))
    }

    pub fn images(&self) -> impl Iterator<Item = (&Part, PathBuf)> {
        self.manifest.parts.iter().filter(|p| p.kind == "image").map(|p| (p, self.dir.join(&p.path)))
    }
}

/// The payload attached to an executable.
pub struct Payload {
    exe: PathBuf,
    footer: Footer,
}

impl Payload {
    /// The payload attached to the running executable, if any.
    pub fn of_current_exe() -> Result<Option<Payload>, PayloadError> {
        let exe = std::env::current_exe().map_err(|e| PayloadError::Io("/proc/self/exe".into(), e))?;
        Payload::of(&exe)
    }

    pub fn of(exe: &Path) -> Result<Option<Payload>, PayloadError> {
        Ok(footer::read(exe)?.map(|footer| Payload { exe: exe.into(), footer }))
    }

    /// Where the payload starts in the file: the executable is before it.
    pub fn offset(&self) -> u64 {
        self.footer.offset
    }

    pub fn hash(&self) -> String {
        hex::encode(self.footer.sha256)
    }

    fn reader(&self) -> Result<std::io::Take<File>, PayloadError> {
        let io = |e| PayloadError::Io(self.exe.clone(), e);
        let mut f = File::open(&self.exe).map_err(io)?;
        f.seek(SeekFrom::Start(self.footer.offset)).map_err(io)?;
        Ok(f.take(self.footer.length))
    }

    fn damaged(&self, why: impl std::fmt::Display) -> PayloadError {
        PayloadError::Damaged(self.exe.clone(), why.to_string())
    }

    /// Reads only the manifest (the first entry), without extracting.
    pub fn manifest(&self) -> Result<Manifest, PayloadError> {
        read_manifest(self.reader()?).map_err(|e| self.damaged(e))
    }

    /// Extracts into `<data_dir>/bin/<hash>/` unless that is already there,
    /// then removes other versions. The sha256 is checked while unpacking;
    /// on a mismatch the partial copy is removed and nothing is used.
    pub fn extract(&self, data_dir: &Path) -> Result<Components, PayloadError> {
        let root = data_dir.join("bin");
        let io = |p: &Path, e| PayloadError::Io(p.into(), e);
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let hash = self.hash();
        let dir = root.join(&hash[..16]);
        if !dir.is_dir() {
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = root.join(format!(".tmp-{}-{seq}-{}", std::process::id(), &hash[..16]));
            let _ = std::fs::remove_dir_all(&tmp);
            let unpacked = self.unpack_verified(&tmp);
            if let Err(e) = unpacked {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                let _ = std::fs::remove_dir_all(&tmp);
                // Another process finished first: use its copy.
                if !dir.is_dir() {
                    return Err(io(&dir, e));
                }
            }
        }
        remove_stale(&root, &hash[..16]);
        Components::open(&dir)
    }

    fn unpack_verified(&self, into: &Path) -> Result<(), PayloadError> {
        let mut hashing = HashingReader { inner: self.reader()?, hasher: Sha256::new() };
        {
            let decoder = zstd::Decoder::new(&mut hashing).map_err(|e| self.damaged(e))?;
            let mut archive = tar::Archive::new(decoder);
            archive.set_preserve_permissions(true);
            archive.unpack(into).map_err(|e| self.damaged(e))?;
        }
        // Hash whatever the decoder left unread too (zstd frame padding).
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| self.damaged(e))?;
        if hashing.hasher.finalize().as_slice() != self.footer.sha256 {
            return Err(self.damaged("sha256 mismatch"));
        }
        sync_tree(into).map_err(|e| PayloadError::Io(into.into(), e))
    }
}

impl Components {
    /// Uses an already extracted payload (`--components-dir`).
    pub fn open(dir: &Path) -> Result<Components, PayloadError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|_| PayloadError::NoManifest(dir.into()))?;
        let manifest = serde_json::from_str(&text).map_err(|e| PayloadError::BadManifest(path, e.to_string()))?;
        Ok(Components { dir: dir.into(), manifest })
    }

    /// The components to run with: `--components-dir` when given, else the
    /// payload of this executable, extracted under `data_dir`.
    pub fn locate(data_dir: &Path, components_dir: Option<&Path>) -> Result<Components, PayloadError> {
        if let Some(dir) = components_dir {
            return Components::open(dir);
        }
        Payload::of_current_exe()?.ok_or(PayloadError::Missing)?.extract(data_dir)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Flushes the extracted files to disk before the rename makes them live,
/// so a power cut cannot leave a "complete" directory with empty files.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

/// Removes other extracted versions and leftovers of dead extractions.
fn remove_stale(root: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = match name.strip_prefix(".tmp-") {
            Some(rest) => rest
                .split('-')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok())
                .map_or(true, |pid| !Path::new(&format!("/proc/{pid}")).exists()),
            None => name != keep,
        };
        if stale {
            tracing::info!(path = %entry.path().display(), "removing stale components");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The manifest at the start of a payload archive (tar + zstd).
fn read_manifest(payload: impl Read) -> Result<Manifest, String> {
    let decoder = zstd::Decoder::new(payload).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(|e| e.to_string())?;
    let mut first = entries.next().ok_or("empty archive")?.map_err(|e| e.to_string())?;
    if first.path().map_err(|e| e.to_string())?.as_ref() != Path::new("manifest.json") {
        return Err("the archive does not start with manifest.json".into());
    }
    let mut text = String::new();
    first.read_to_string(&mut text).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("manifest.json: {e}"))
}

/// Appends `payload` to `exe`, writing `out`: what `make dist` runs. Refuses
/// a payload built for another architecture than the executable's.
pub fn attach(exe: &Path, payload: &Path, out: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut binary = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    if footer::read(exe)?.is_some() {
        anyhow::bail!("{} already carries a payload; attach to a plain build", exe.display());
    }
    let data = std::fs::read(payload).with_context(|| format!("reading {}", payload.display()))?;
    let manifest = read_manifest(&data[..]).map_err(|e| anyhow::anyhow!("{}: {e}", payload.display()))?;
    let exe_arch = elf_arch(&binary).with_context(|| format!("{} is not an amd64 or arm64 executable", exe.display()))?;
    if manifest.arch != exe_arch {
        anyhow::bail!(
            "{} carries {} parts but {} is an {exe_arch} executable; build the payload for {exe_arch} (ARCH={exe_arch} bootstrap/build.sh)",
            payload.display(),
            manifest.arch,
            exe.display()
        );
    }
    let footer = Footer { offset: binary.len() as u64, length: data.len() as u64, sha256: Sha256::digest(&data).into() };
    binary.extend_from_slice(&data);
    binary.extend_from_slice(&footer.encode());
    let tmp = out.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&binary)?;
    f.sync_all()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

#[cfg(test)]
mod tests;

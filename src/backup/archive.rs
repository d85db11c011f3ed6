//! The backup archive: tar compressed with zstd, 0600, its manifest
//! (`k8s-backup.json`) first: what it holds, from which cluster and
//! datastore revision, and each file's size, mode and sha256, so a
//! truncated or altered archive is refused before anything is restored.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::fsutil::sha256_file;

pub const MANIFEST: &str = "k8s-backup.json";
const FORMAT: u32 = 1;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    /// `datastore/datastore.db`: a copy of the single server's SQLite file.
    Sqlite,
    /// `etcd/snapshot.db`: an etcd snapshot from the server's member.
    Etcd,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub k8s_version: String,
    /// Unix seconds.
    pub created: u64,
    /// The server it was made on.
    pub node: String,
    /// Which cluster: the sha256 of its CA certificate.
    pub cluster: String,
    pub datastore: Datastore,
    /// The datastore revision the snapshot holds.
    pub revision: i64,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub mode: u32,
    pub sha256: String,
}

/// A file to put in the archive under `name`.
pub struct Source {
    pub name: String,
    pub file: PathBuf,
}

/// What the manifest says besides the files.
pub struct About {
    pub node: String,
    pub cluster: String,
    pub datastore: Datastore,
    pub revision: i64,
}

/// Writes the archive to `dest` (through a temporary file beside it, then
/// renamed, so a crash leaves no half archive under the final name).
pub fn write(dest: &Path, about: About, sources: &[Source]) -> anyhow::Result<Manifest> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for s in sources {
        let meta = std::fs::metadata(&s.file).with_context(|| format!("reading {}", s.file.display()))?;
        files.push(FileEntry { path: s.name.clone(), size: meta.len(), mode: meta.permissions().mode() & 0o777, sha256: sha256_file(&s.file)?.0 });
    }
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let manifest = Manifest {
        format: FORMAT,
        k8s_version: crate::version::VERSION.to_string(),
        created,
        node: about.node,
        cluster: about.cluster,
        datastore: about.datastore,
        revision: about.revision,
        files,
    };
    let dir = dest.parent().context("the archive path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new().prefix(".backup-").tempfile_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    let zstd = zstd::Encoder::new(tmp.as_file(), 3)?;
    let mut tar = tar::Builder::new(zstd);
    let json = serde_json::to_vec_pretty(&manifest)?;
    append(&mut tar, MANIFEST, 0o600, json.len() as u64, &json[..])?;
    for (s, f) in sources.iter().zip(&manifest.files) {
        let file = std::fs::File::open(&s.file).with_context(|| format!("reading {}", s.file.display()))?;
        append(&mut tar, &f.path, f.mode, f.size, file.take(f.size))?;
    }
    tar.into_inner()?.finish()?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).with_context(|| format!("writing {}", dest.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(manifest)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, mode: u32, size: u64, data: impl Read) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data).with_context(|| format!("adding {name} to the archive"))?;
    Ok(())
}

/// The manifest alone (the archive's first entry): for `k8s backup list`.
pub fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let mut tar = open(path)?;
    let mut entries = tar.entries().map_err(|e| damaged(path, e))?;
    let first = entries.next().ok_or_else(|| not_ours(path, "it is empty"))?.map_err(|e| damaged(path, e))?;
    manifest_from(path, first)
}

/// Unpacks the archive into `dir` (new and empty) and checks every file
/// against the manifest: nothing missing, nothing extra, sizes and hashes.
pub fn unpack_verified(path: &Path, dir: &Path) -> anyhow::Result<Manifest> {
    use std::os::unix::fs::PermissionsExt;
    let mut tar = open(path)?;
    let mut entries = tar.entries().map_err(|e| damaged(path, e))?;
    let first = entries.next().ok_or_else(|| not_ours(path, "it is empty"))?.map_err(|e| damaged(path, e))?;
    let manifest = manifest_from(path, first)?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(path, e))?;
        let name = entry.path().map_err(|e| damaged(path, e))?.to_string_lossy().into_owned();
        let Some(listed) = manifest.files.iter().find(|f| f.path == name) else {
            bail!("{} holds {name}, which its manifest does not list; it was altered: use another backup", path.display());
        };
        let dest = dir.join(safe_relative(&name).ok_or_else(|| not_ours(path, &format!("it names a file outside itself ({name})")))?);
        std::fs::create_dir_all(dest.parent().expect("a file under dir"))?;
        let mut out = std::fs::File::create(&dest).with_context(|| format!("writing {}", dest.display()))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(listed.mode & 0o700))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| damaged(path, e))?;
        out.sync_all()?;
        let (sha, size) = sha256_file(&dest)?;
        if sha != listed.sha256 || size != listed.size {
            bail!("{}: {name} does not match its manifest (damaged or altered); use another backup", path.display());
        }
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(listed.mode))?;
        seen.insert(name);
    }
    let missing: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).filter(|p| !seen.contains(*p)).collect();
    if !missing.is_empty() {
        bail!("{} is truncated: {} missing ({}); use another backup", path.display(), missing.len(), missing.join(", "));
    }
    Ok(manifest)
}

fn open(path: &Path) -> anyhow::Result<tar::Archive<zstd::Decoder<'static, std::io::BufReader<std::fs::File>>>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != ZSTD_MAGIC {
        return Err(not_ours(path, "it is not zstd-compressed"));
    }
    std::io::Seek::rewind(&mut file)?;
    let zstd = zstd::Decoder::new(file).map_err(|e| not_ours(path, &e.to_string()))?;
    Ok(tar::Archive::new(zstd))
}

fn manifest_from<R: Read>(path: &Path, mut entry: tar::Entry<R>) -> anyhow::Result<Manifest> {
    if entry.path().map_err(|e| damaged(path, e))?.to_string_lossy() != MANIFEST {
        return Err(not_ours(path, &format!("it does not start with {MANIFEST}")));
    }
    let mut json = Vec::new();
    entry.by_ref().take(1 << 20).read_to_end(&mut json).map_err(|e| damaged(path, e))?;
    let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| not_ours(path, &format!("its manifest does not read ({e})")))?;
    if manifest.format != FORMAT {
        bail!("{} is a backup of format {}, this k8s reads format {FORMAT}; restore it with the k8s version that made it ({})", path.display(), manifest.format, manifest.k8s_version);
    }
    Ok(manifest)
}

/// `name` as a relative path that stays inside the directory it is joined to.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    path.components().all(|c| matches!(c, Component::Normal(_))).then(|| path.to_path_buf())
}

fn not_ours(path: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!("{} is not a k8s backup archive ({why}); `k8s backup` makes them", path.display())
}

fn damaged(path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{} is truncated or damaged ({e}); use another backup", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about() -> About {
        About { node: "n1".into(), cluster: "c".into(), datastore: Datastore::Sqlite, revision: 7 }
    }

    #[test]
    fn an_archive_reads_back_and_a_damaged_or_foreign_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"secret key").unwrap();
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&b, vec![7u8; 300_000]).unwrap();
        let sources = [Source { name: "pki/ca.key".into(), file: a }, Source { name: "datastore/datastore.db".into(), file: b }];
        let archive = dir.path().join("backup.tar.zst");
        write(&archive, about(), &sources).unwrap();
        assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_manifest(&archive).unwrap().revision, 7);

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let m = unpack_verified(&archive, &out).unwrap();
        assert_eq!(m.files.len(), 2);
        assert_eq!(std::fs::read(out.join("pki/ca.key")).unwrap(), b"secret key");
        assert_eq!(std::fs::metadata(out.join("pki/ca.key")).unwrap().permissions().mode() & 0o777, 0o600);

        // Cut short: refused, saying so.
        let bytes = std::fs::read(&archive).unwrap();
        let cut = dir.path().join("cut.tar.zst");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let out2 = dir.path().join("out2");
        std::fs::create_dir(&out2).unwrap();
        let err = unpack_verified(&cut, &out2).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");

        // Not ours at all.
        let foreign = dir.path().join("foreign.tar.zst");
        std::fs::write(&foreign, b"hello").unwrap();
        let err = read_manifest(&foreign).unwrap_err().to_string();
        assert!(err.contains("not a k8s backup archive"), "{err}");
        assert!(safe_relative("../etc/passwd").is_none() && safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("pki/etcd/ca.key").is_some());
    }
}

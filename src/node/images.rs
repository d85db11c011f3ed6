//! Images on a node without a registry: the ones the binary carries, and
//! image archives a user drops in `<data-dir>/images/` (k3s's
//! `agent/images/`), for air-gapped hosts and locally built images.
//!
//! Lifecycle: at every node start, before the kubelet runs, the carried
//! images missing from containerd's CRI namespace are imported, then every
//! archive in the images dir that is new or changed since it was last
//! imported (by name, size and mtime, recorded in `agent/etc/images-imported`).
//! While the node runs, [`watch`] looks at the dir every
//! [`WATCH_INTERVAL`] and imports what was added or replaced there. A bad
//! archive is named in the log and the start goes on (it is retried when the
//! file changes); removing an archive does not remove its images
//! (`k8s ctr images rm` does). Imported images are pinned ([`PINNED`]): the
//! kubelet's image garbage collection leaves them, as they have no registry
//! to come back from.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use crate::host::layout::NodePaths as Paths;
use crate::payload::Components;

/// How often a running node looks for new archives in the images dir.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// The archive kinds the images dir takes: an OCI or Docker image tar, plain
/// or zstd-compressed (containerd's importer reads only plain tar: we
/// decompress).
const SUFFIXES: [&str; 2] = [".tar", ".tar.zst"];

/// The carried ctr on this node's containerd, in the CRI namespace.
fn ctr(c: &Components, p: &Paths, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(c.bin("ctr"));
    cmd.arg("--address").arg(&p.containerd_socket).args(["--namespace", "k8s.io"]).args(args);
    cmd
}

/// Imports the carried images into containerd's CRI namespace, skipping
/// those already there (a restart costs one `ctr images ls`, and a pin of
/// each: a version before pinning imported them unpinned).
pub async fn import_carried(c: &Components, p: &Paths) -> anyhow::Result<()> {
    let listed = tokio::process::Command::from(ctr(c, p, &["images", "ls", "--quiet"])).output().await.context("running ctr")?;
    let present = String::from_utf8_lossy(&listed.stdout).into_owned();
    // All at once: a fresh node waits for the slowest, not for the sum.
    let work = c.images().map(|(part, file)| {
        let name = part.image.clone().unwrap_or_else(|| part.name.clone());
        let imported = present.lines().any(|l| l == name);
        async move {
            if imported {
                let (c, p) = (c.clone(), p.clone());
                return tokio::task::spawn_blocking(move || pin(&c, &p, &name)).await?;
            }
            import_file(c, p, &file).await?;
            tracing::info!(image = name, "image imported");
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(work).await?;
    Ok(())
}

/// How many archives of the images dir are imported at once.
const DIR_IMPORTS_AT_ONCE: usize = 2;

/// The archives that failed to import in this process, by name, with the
/// stamp they had: tried again only once they change (or at the next start).
pub type Failed = BTreeMap<String, String>;

/// Imports the archives of the images dir that are new or changed since
/// their last import (or failed attempt); returns how many were imported.
pub async fn import_dir(c: &Components, p: &Paths, failed: &mut Failed) -> anyhow::Result<usize> {
    let found = archives(&p.images_dir)?;
    if found.is_empty() {
        return Ok(0);
    }
    let mut record = read_record(&p.images_imported)?;
    let todo = due(found, &record, failed);
    // A few at a time: the conformance kit's twelve archives at once, on
    // nodes sharing two cores, made containerd drop events and slowed all.
    use futures::StreamExt;
    let imports: Vec<_> = todo.iter().map(|(file, stamp)| async move { (key(file), stamp.clone(), import_file(c, p, file).await) }).collect();
    let done: Vec<_> = futures::stream::iter(imports).buffered(DIR_IMPORTS_AT_ONCE).collect().await;
    let mut n = 0;
    for (name, stamp, result) in done {
        match result {
            Ok(images) => {
                tracing::info!(archive = %p.images_dir.join(&name).display(), images = images.join(" "), "image archive imported");
                failed.remove(&name);
                record.insert(name, stamp);
                n += 1;
            }
            Err(e) => {
                tracing::warn!(archive = %p.images_dir.join(&name).display(), "image archive not imported: {e:#}; fix or replace the file (it is tried again when it changes)");
                failed.insert(name, stamp);
            }
        }
    }
    write_record(&p.images_imported, &record)?;
    Ok(n)
}

/// The archives to import: neither imported nor failed as they are now.
fn due(found: Vec<(PathBuf, String)>, record: &BTreeMap<String, String>, failed: &Failed) -> Vec<(PathBuf, String)> {
    found.into_iter().filter(|(file, stamp)| record.get(&key(file)) != Some(stamp) && failed.get(&key(file)) != Some(stamp)).collect()
}

/// Looks at the images dir every [`WATCH_INTERVAL`] while the node runs.
pub fn watch(c: Components, p: Paths, mut failed: Failed) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = import_dir(&c, &p, &mut failed).await {
                tracing::warn!("images dir {}: {e:#}", p.images_dir.display());
            }
        }
    });
}

/// Streams one archive into `ctr images import -`, decompressing by suffix
/// (so a large archive never sits in memory); returns the image names ctr
/// reports, or, when its output has none, those of the archive that
/// containerd lists (see [`listed_archive_names`]).
async fn import_file(c: &Components, p: &Paths, file: &Path) -> anyhow::Result<Vec<String>> {
    let mut cmd = ctr(c, p, &["images", "import", "-"]);
    let mut ls = ctr(c, p, &["images", "ls", "--quiet"]);
    let (file, c, p) = (file.to_path_buf(), c.clone(), p.clone());
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("running ctr")?;
        let fed = child.stdin.take().context("ctr stdin").and_then(|mut stdin| {
            std::io::copy(&mut plain_tar(&file)?, &mut stdin).with_context(|| format!("reading {}", file.display()))
        });
        let out = child.wait_with_output().context("waiting for ctr")?;
        if !out.status.success() {
            bail!("ctr images import: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        fed?;
        let mut names = imported_names(&String::from_utf8_lossy(&out.stdout));
        if names.is_empty() {
            let listed = ls.output().context("running ctr images ls")?;
            names = listed_archive_names(&file, &String::from_utf8_lossy(&listed.stdout))?;
        }
        if names.is_empty() {
            bail!("no image in it (an image archive is an OCI layout or `docker save` tar, with index.json or manifest.json)");
        }
        for name in &names {
            pin(&c, &p, name)?;
        }
        Ok(names)
    })
    .await?
}

/// The CRI label that makes an image pinned: the kubelet's image garbage
/// collection never removes it. Imported images have no registry to come
/// back from (a disk above the kubelet's 85 % threshold removed the
/// conformance kit's images before the tests used them); k3s pins its
/// air-gap images the same way.
const PINNED: &str = "io.cri-containerd.pinned=pinned";

fn pin(c: &Components, p: &Paths, name: &str) -> anyhow::Result<()> {
    let out = ctr(c, p, &["images", "label", name, PINNED]).output().context("running ctr images label")?;
    if !out.status.success() {
        bail!("pinning {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// containerd 2.4's transfer progress has no end: ctr returns when the
/// import does and may miss the last events, the "saved" lines (containerd
/// logs "event not sent: saved/NAME"; seen with four carried images imported
/// at once). Then the names come from the archive (index.json's
/// `io.containerd.image.name` annotations, else manifest.json's `RepoTags`,
/// as ctr names them), those that containerd lists (`ls`: `ctr images ls -q`).
fn listed_archive_names(file: &Path, ls: &str) -> anyhow::Result<Vec<String>> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(plain_tar(file)?);
    let (mut index, mut docker) = (None, None);
    for entry in archive.entries().with_context(|| format!("reading {}", file.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", file.display()))?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        if path == "index.json" || path == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).with_context(|| format!("reading {path} of {}", file.display()))?;
            *(if path == "index.json" { &mut index } else { &mut docker }) = Some(text);
        }
    }
    let mut names = Vec::new();
    if let Some(index) = index.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
        for m in index["manifests"].as_array().into_iter().flatten() {
            names.extend(m["annotations"]["io.containerd.image.name"].as_str().map(str::to_owned));
        }
    }
    if names.is_empty() {
        if let Some(docker) = docker.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
            for m in docker.as_array().into_iter().flatten() {
                for tag in m["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
                    names.push(docker_name(tag));
                }
            }
        }
    }
    names.retain(|n| ls.lines().any(|l| l == n));
    Ok(names)
}

/// A `docker save` tag as containerd names it (`busybox:1` →
/// `docker.io/library/busybox:1`).
fn docker_name(tag: &str) -> String {
    match tag.split_once('/') {
        None => format!("docker.io/library/{tag}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => tag.to_owned(),
        Some(_) => format!("docker.io/{tag}"),
    }
}

/// The archive as a plain tar stream.
fn plain_tar(file: &Path) -> anyhow::Result<Box<dyn std::io::Read>> {
    let f = std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
    Ok(if file.to_string_lossy().ends_with(".tar.zst") { Box::new(zstd::Decoder::with_buffer(f)?) } else { Box::new(f) })
}

/// `ctr images import` (containerd 2's transfer service) prints a
/// "NAME<spaces>\tsaved\t" line per image, then the manifests and progress.
fn imported_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            (words.next() == Some("saved")).then(|| name.to_owned())
        })
        .collect()
}

/// The archives in `dir` with their stamp ("size mtime"); none when the dir
/// does not exist.
fn archives(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // Dot files are partial copies (rsync, scp to a temp name): wait for the rename.
        if name.starts_with('.') || !SUFFIXES.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        let meta = std::fs::metadata(&path)?;
        if meta.is_file() {
            found.push((path, format!("{} {}", meta.len(), meta.mtime_nsec() as i128 + meta.mtime() as i128 * 1_000_000_000)));
        }
    }
    found.sort();
    Ok(found)
}

fn key(file: &Path) -> String {
    file.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

/// The record: one "STAMP\tNAME" line per imported archive; empty before
/// the first import. Any other read error is one: an empty record would
/// import every archive again and, written back, forget them all.
fn read_record(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text.lines().filter_map(|l| l.split_once('\t')).map(|(stamp, name)| (name.to_owned(), stamp.to_owned())).collect())
}

fn write_record(path: &Path, record: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let text: String = record.iter().map(|(name, stamp)| format!("{stamp}\t{name}\n")).collect();
    crate::fsutil::write_if_changed(path, text.as_bytes(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, text) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// ctr's output without "saved" lines: the names come from the archive,
    /// kept only when containerd lists them.
    #[test]
    fn names_from_the_archive_when_ctr_missed_them() {
        let dir = tempfile::tempdir().unwrap();
        let oci = dir.path().join("oci.tar");
        let index = r#"{"manifests":[{"annotations":{"io.containerd.image.name":"registry.k8s.io/x:v1"}},{"annotations":{"io.containerd.image.name":"k8s.local/y:e2e"}}]}"#;
        std::fs::write(&oci, tar_of(&[("oci-layout", "{}"), ("index.json", index), ("manifest.json", r#"[{"RepoTags":["other:1"]}]"#)])).unwrap();
        let listed = "registry.k8s.io/x:v1\nk8s.local/y:e2e\nregistry.k8s.io/pause:3.10\n";
        assert_eq!(listed_archive_names(&oci, listed).unwrap(), ["registry.k8s.io/x:v1", "k8s.local/y:e2e"]);
        assert_eq!(listed_archive_names(&oci, "registry.k8s.io/x:v1\n").unwrap(), ["registry.k8s.io/x:v1"], "only what containerd has");
        let zst = dir.path().join("docker.tar.zst");
        let docker = tar_of(&[("./manifest.json", r#"[{"RepoTags":["busybox:1","me/app:2","reg.local:5000/a:3"]}]"#)]);
        std::fs::write(&zst, zstd::encode_all(&docker[..], 3).unwrap()).unwrap();
        let listed = "docker.io/library/busybox:1\ndocker.io/me/app:2\nreg.local:5000/a:3\n";
        assert_eq!(listed_archive_names(&zst, listed).unwrap(), ["docker.io/library/busybox:1", "docker.io/me/app:2", "reg.local:5000/a:3"]);
        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, tar_of(&[("notes.txt", "x")])).unwrap();
        assert!(listed_archive_names(&empty, listed).unwrap().is_empty());
    }

    #[test]
    fn archives_takes_image_tars_and_skips_partial_copies() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.tar", "b.tar.zst", "c.tgz", ".e.tar", "notes.txt", "f.tar.part"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let names: Vec<String> = archives(dir.path()).unwrap().iter().map(|(p, _)| key(p)).collect();
        assert_eq!(names, ["a.tar", "b.tar.zst"]);
        assert!(archives(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn record_round_trips_and_a_changed_file_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec");
        let file = dir.path().join("a.tar");
        std::fs::write(&file, b"one").unwrap();
        let (_, stamp) = archives(dir.path()).unwrap().remove(0);
        write_record(&rec, &BTreeMap::from([("a.tar".to_owned(), stamp.clone())])).unwrap();
        assert_eq!(read_record(&rec).unwrap().get("a.tar"), Some(&stamp));
        std::fs::write(&file, b"longer").unwrap();
        let (_, changed) = archives(dir.path()).unwrap().remove(0);
        assert_ne!(changed, stamp);
        assert!(read_record(&dir.path().join("none")).unwrap().is_empty(), "no record yet: nothing imported");
        assert!(read_record(dir.path()).is_err(), "an unreadable record is an error, not an empty one to write back");
    }

    #[test]
    fn a_failed_archive_waits_until_it_changes() {
        let found = |stamp: &str| vec![(PathBuf::from("/i/a.tar"), stamp.to_string()), (PathBuf::from("/i/b.tar"), "1 1".to_string())];
        let record = BTreeMap::from([("b.tar".to_string(), "1 1".to_string())]);
        let mut failed = Failed::new();
        assert_eq!(due(found("5 5"), &record, &failed).len(), 1, "a new archive is due, an imported one is not");
        failed.insert("a.tar".into(), "5 5".into());
        assert!(due(found("5 5"), &record, &failed).is_empty(), "a failed one is not tried again as it is");
        assert_eq!(due(found("6 6"), &record, &failed).len(), 1, "replaced, it is tried again");
    }

    fn read_all(file: &Path) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        plain_tar(file)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn compressed_archives_are_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let zst = dir.path().join("i.tar.zst");
        std::fs::write(&zst, zstd::encode_all(&b"tar bytes"[..], 3).unwrap()).unwrap();
        assert_eq!(read_all(&zst).unwrap(), b"tar bytes");
        let tar = dir.path().join("i.tar");
        std::fs::write(&tar, b"tar bytes").unwrap();
        assert_eq!(read_all(&tar).unwrap(), b"tar bytes");
        std::fs::write(dir.path().join("bad.tar.zst"), b"plain").unwrap();
        assert!(read_all(&dir.path().join("bad.tar.zst")).is_err());
    }

    #[test]
    fn names_come_from_ctr_output() {
        // What the carried ctr printed for `images import -` of two images.
        let out = "registry.k8s.io/e2e-test-images/agnhost:2.66.1  \tsaved\t\nk8s.local/x:1                \tsaved\t\n\
                   application/vnd.oci.image.manifest.v1+json sha256:39a0\nImporting\telapsed: 0.1 s\ttotal:   0.0 B\t(0.0 B/s)\t\n";
        assert_eq!(imported_names(out), ["registry.k8s.io/e2e-test-images/agnhost:2.66.1", "k8s.local/x:1"]);
    }
}

//! Round trips of attach → find → extract, and the damaged cases.

use std::path::{Path, PathBuf};

use super::*;

/// A payload like bootstrap's: manifest.json first, a binary and an image.
fn make_payload(dir: &Path) -> PathBuf {
    let manifest = r#"{"kubernetes_version": "v1.37.2", "parts": [
        {"name": "kube", "kind": "binary", "path": "bin/kube", "version": "v1.37.2"},
        {"name": "kubectl", "kind": "link", "path": "bin/kubectl", "version": "v1.37.2"},
        {"name": "pause", "kind": "image", "path": "images/pause.tar", "version": "3.10.2", "image": "registry.k8s.io/pause:3.10.2"}]}"#;
    let path = dir.join("payload.tar.zst");
    let mut tar = tar::Builder::new(zstd::Encoder::new(File::create(&path).unwrap(), 3).unwrap().auto_finish());
    let mut add = |name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("manifest.json", manifest.as_bytes(), 0o644);
    add("bin/kube", b"#!/bin/sh\necho kube\n", 0o755);
    add("images/pause.tar", &[1u8; 4096], 0o644);
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_cksum();
    tar.append_link(&mut link, "bin/kubectl", "kube").unwrap();
    tar.into_inner().unwrap();
    path
}

/// A copy of a real executable (this test binary) with the payload attached.
fn make_exe(dir: &Path) -> PathBuf {
    let payload = make_payload(dir);
    let exe = dir.join("k8s");
    attach(&std::env::current_exe().unwrap(), &payload, &exe).unwrap();
    exe
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let exe = make_exe(dir.path());
    let payload = Payload::of(&exe).unwrap().expect("payload found");
    assert_eq!(payload.manifest().unwrap().kubernetes_version, "v1.37.2");
    let data = dir.path().join("data");
    let c = payload.extract(&data).unwrap();
    assert_eq!(std::fs::read_to_string(c.bin("kube")).unwrap(), "#!/bin/sh\necho kube\n");
    assert_eq!(std::fs::read_link(c.bin("kubectl")).unwrap(), Path::new("kube"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(c.bin("kube")).unwrap().permissions().mode() & 0o777, 0o755);
    let images: Vec<_> = c.images().map(|(p, path)| (p.image.clone().unwrap(), path)).collect();
    assert_eq!(images, vec![("registry.k8s.io/pause:3.10.2".to_string(), c.dir.join("images/pause.tar"))]);
    // A second start reuses the extracted copy, and removes stale ones.
    std::fs::create_dir_all(data.join("bin/0123456789abcdef")).unwrap();
    std::fs::write(c.bin("marker"), "kept").unwrap();
    let again = payload.extract(&data).unwrap();
    assert_eq!(again.dir, c.dir);
    assert!(again.bin("marker").exists());
    assert!(!data.join("bin/0123456789abcdef").exists());
}

#[test]
fn plain_build_has_no_payload() {
    assert!(Payload::of(&std::env::current_exe().unwrap()).unwrap().is_none());
}

#[test]
fn truncated_attachment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let exe = make_exe(dir.path());
    let len = std::fs::metadata(&exe).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&exe).unwrap();
    f.set_len(len - 100).unwrap();
    let err = Payload::of(&exe).err().expect("truncation detected").to_string();
    assert!(err.contains("damaged") && err.contains("truncated"), "{err}");
}

#[test]
fn corrupted_attachment_extracts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = make_exe(dir.path());
    let payload = Payload::of(&exe).unwrap().unwrap();
    // Flip one byte in the middle of the payload.
    let mut bytes = std::fs::read(&exe).unwrap();
    let at = (payload.footer.offset + payload.footer.length / 2) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(&exe, &bytes).unwrap();
    let data = dir.path().join("data");
    let err = Payload::of(&exe).unwrap().unwrap().extract(&data).err().expect("corruption detected");
    assert!(err.to_string().contains("damaged"), "{err}");
    let left: Vec<_> = std::fs::read_dir(data.join("bin")).unwrap().collect();
    assert!(left.is_empty(), "nothing extracted: {left:?}");
}

#[test]
fn concurrent_extraction_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let exe = make_exe(dir.path());
    let data = dir.path().join("data");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (exe, data) = (exe.clone(), data.clone());
            // Each extracts into its own temporary dir; the rename makes
            // one copy win and the others use it.
            std::thread::spawn(move || Payload::of(&exe).unwrap().unwrap().extract(&data).map(|c| c.dir))
        })
        .collect();
    let dirs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let first = dirs[0].as_ref().unwrap().clone();
    for d in &dirs {
        assert_eq!(d.as_ref().unwrap(), &first);
    }
    assert_eq!(std::fs::read_dir(data.join("bin")).unwrap().count(), 1);
}

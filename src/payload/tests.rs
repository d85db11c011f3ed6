//! Round trips of attach → find → extract, and the damaged cases.

use std::path::{Path, PathBuf};

use super::*;

/// A payload like bootstrap's: manifest.json first, a binary and an image.
fn make_payload(dir: &Path) -> PathBuf {
    make_payload_for(dir, this_arch())
}

fn make_payload_for(dir: &Path, arch: &str) -> PathBuf {
    let manifest = r#"{"kubernetes_version": "v1.37.2", "arch": "ARCH", "parts": [
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
    add("manifest.json", manifest.replace("ARCH", arch).as_bytes(), 0o644);
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

#[test]
fn a_payload_of_another_arch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = if this_arch() == "amd64" { "arm64" } else { "amd64" };
    let payload = make_payload_for(dir.path(), other);
    let err = attach(&std::env::current_exe().unwrap(), &payload, &dir.path().join("k8s")).unwrap_err().to_string();
    assert!(err.contains(&format!("carries {other} parts")) && err.contains(&format!("ARCH={}", this_arch())), "{err}");
    assert!(!dir.path().join("k8s").exists());
}

#[test]
fn elf_machines() {
    let mut header = [0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[18] = 0xb7;
    assert_eq!(elf_arch(&header), Some("arm64"));
    header[18] = 0x3e;
    assert_eq!(elf_arch(&header), Some("amd64"));
    header[18] = 0x28; // 32-bit ARM
    assert_eq!(elf_arch(&header), None);
    assert_eq!(elf_arch(b"#!/bin/sh"), None);
    assert_eq!(elf_arch(&std::fs::read(std::env::current_exe().unwrap()).unwrap()), Some(this_arch()));
    assert_eq!(arch_of_machine("aarch64"), Some("arm64"));
    assert_eq!(arch_of_machine("armv7l"), None);
}

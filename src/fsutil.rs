//! Small file helpers used across modules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// The program `name` as the shell would find it on `PATH` (a default
/// system PATH when unset).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Writes a file so readers see the old or the new content, never a mix,
/// and a crash never leaves it empty. Creates the parent directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    replace(path, data, mode).with_context(|| format!("cannot write {}", path.display()))
}

/// The mechanism behind every atomic write: a temp file in the same
/// directory (so the rename is atomic; created 0600, so a secret is never
/// readable by others, even briefly) given its exact mode, fsynced, renamed
/// over `path`, then the directory fsynced (so the rename survives a crash).
pub fn replace(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?; // umask-proof
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Sets a file's or directory's permission bits.
pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| format!("setting the mode of {}", path.display()))
}

/// A file's sha256 (hex) and size, read in a stream.
pub fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Writes only when the content differs; true when it changed. Same
/// content under another mode gets `mode` (not counted as a change).
pub fn write_if_changed(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        if current != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        }
        return Ok(false);
    }
    write_atomic(path, data, mode)?;
    Ok(true)
}

/// Bytes an unprivileged writer may still use on `path`'s filesystem.
pub fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).context("a path with a NUL byte")?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot stat the filesystem of {}", path.display()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unchanged_file_gets_its_mode_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        assert!(super::write_if_changed(&f, b"secret", 0o600).unwrap());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!super::write_if_changed(&f, b"secret", 0o600).unwrap(), "same content: no change");
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn free_bytes_of_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(super::free_bytes(dir.path()).unwrap() > 0);
        assert!(super::free_bytes(&dir.path().join("missing")).unwrap_err().to_string().contains("missing"));
    }
}

//! Small file helpers used across modules.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Writes a file so readers see the old or the new content, never a mix,
/// and a crash never leaves it empty: temp file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(data)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes only when the content differs; true when it changed.
pub fn write_if_changed(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<bool> {
    if std::fs::read(path).map_or(false, |old| old == data) {
        return Ok(false);
    }
    write_atomic(path, data, mode)?;
    Ok(true)
}

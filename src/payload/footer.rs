//! The attachment format: `[k8s executable][payload][footer]`, where the
//! payload is a tar.zst of the components and the footer is
//! `magic (8) | offset (u64 LE) | length (u64 LE) | sha256 (32)`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::PayloadError;

pub const MAGIC: &[u8; 8] = b"K8SPAYL1";
pub const LEN: u64 = 8 + 8 + 8 + 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    pub offset: u64,
    pub length: u64,
    pub sha256: [u8; 32],
}

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.sha256);
        out
    }

    fn decode(bytes: &[u8; LEN as usize]) -> Option<Footer> {
        if &bytes[..8] != MAGIC {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
        Some(Footer { offset: u64_at(8), length: u64_at(16), sha256: bytes[24..56].try_into().unwrap() })
    }
}

/// Reads the footer of `exe`. `Ok(None)`: nothing is attached (a plain
/// `cargo build`). Bytes after the executable without a valid footer mean
/// a damaged attachment, which is an error.
pub fn read(exe: &Path) -> Result<Option<Footer>, PayloadError> {
    let io = |e| PayloadError::Io(exe.into(), e);
    let mut f = File::open(exe).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let elf_end = elf_end(&mut f).map_err(io)?;
    if size >= LEN {
        let mut buf = [0u8; LEN as usize];
        f.seek(SeekFrom::Start(size - LEN)).map_err(io)?;
        f.read_exact(&mut buf).map_err(io)?;
        if let Some(footer) = Footer::decode(&buf) {
            if footer.offset.checked_add(footer.length).map(|end| end + LEN) != Some(size) {
                return Err(PayloadError::Damaged(exe.into(), "the footer does not match the file size".into()));
            }
            return Ok(Some(footer));
        }
    }
    match elf_end {
        Some(end) if size > end => Err(PayloadError::Damaged(
            exe.into(),
            format!("{} bytes follow the executable but there is no valid footer (truncated download?)", size - end),
        )),
        _ => Ok(None),
    }
}

/// Where an ELF64 file's own bytes end (its section header table is last),
/// or None when the file is not ELF64.
fn elf_end(f: &mut File) -> std::io::Result<Option<u64>> {
    let mut header = [0u8; 64];
    f.seek(SeekFrom::Start(0))?;
    if f.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" || header[4] != 2 {
        return Ok(None);
    }
    let shoff = u64::from_le_bytes(header[0x28..0x30].try_into().unwrap());
    let shentsize = u16::from_le_bytes(header[0x3A..0x3C].try_into().unwrap()) as u64;
    let shnum = u16::from_le_bytes(header[0x3C..0x3E].try_into().unwrap()) as u64;
    Ok(Some(shoff + shentsize * shnum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let footer = Footer { offset: 10, length: 20, sha256: [7; 32] };
        let bytes: [u8; LEN as usize] = footer.encode().try_into().unwrap();
        assert_eq!(Footer::decode(&bytes), Some(footer));
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(Footer::decode(&bad), None);
    }
}

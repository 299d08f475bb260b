//! Free-space check before a layer is unpacked: a full disk should fail the pull with a clear
//! reason up front, not half-way through a layer with ENOSPC on some file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{ImageError, Result};
use crate::unpack::Compression;

/// Bytes the layer blob at `blob` (of `size` compressed bytes) will take once unpacked, as well
/// as the blob itself tells: gzip's trailer (ISIZE, the uncompressed length modulo 2^32), zstd's
/// frame content size when the encoder wrote it, the blob size itself otherwise (uncompressed
/// tar, or no size recorded — then the estimate is a lower bound).
pub(crate) fn estimated_unpacked_size(blob: &Path, size: u64) -> Result<u64> {
    let mut file = File::open(blob).map_err(|e| ImageError::io("open", blob, e))?;
    let mut head = [0u8; 18];
    let n = read_up_to(&mut file, &mut head).map_err(|e| ImageError::io("read", blob, e))?;
    let estimate = match Compression::detect(&head[..n]) {
        Compression::Gzip if size >= 18 => {
            let mut trailer = [0u8; 4];
            file.seek(SeekFrom::End(-4))
                .and_then(|_| file.read_exact(&mut trailer))
                .map_err(|e| ImageError::io("read", blob, e))?;
            // ISIZE wraps at 4 GiB; a layer never shrinks when unpacked, so take the larger.
            u64::from(u32::from_le_bytes(trailer)).max(size)
        }
        Compression::Zstd => zstd::zstd_safe::get_frame_content_size(&head[..n])
            .ok()
            .flatten()
            .unwrap_or(size)
            .max(size),
        _ => size,
    };
    Ok(estimate)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(|e| ImageError::io("statvfs", dir, e.into()))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fails with [`ImageError::NoSpace`] unless `needs` bytes fit on the file system of `dir`.
pub(crate) fn ensure_room(layer: &str, dir: &Path, needs: u64) -> Result<()> {
    let free = free_bytes(dir)?;
    if needs > free {
        return Err(ImageError::NoSpace {
            layer: layer.to_owned(),
            needs,
            free,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn estimates_gzip_from_its_trailer_and_plain_tar_from_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![0u8; 3 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let path = dir.path().join("gz");
        std::fs::write(&path, &gz).unwrap();
        assert_eq!(
            estimated_unpacked_size(&path, gz.len() as u64).unwrap(),
            3 << 20
        );
        let zst = zstd::bulk::compress(&data, 1).unwrap();
        let path = dir.path().join("zst");
        std::fs::write(&path, &zst).unwrap();
        assert_eq!(
            estimated_unpacked_size(&path, zst.len() as u64).unwrap(),
            3 << 20
        );
        let path = dir.path().join("tar");
        std::fs::write(&path, vec![1u8; 4096]).unwrap();
        assert_eq!(estimated_unpacked_size(&path, 4096).unwrap(), 4096);
    }

    #[test]
    fn refuses_what_does_not_fit_naming_the_layer_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(ensure_room("sha256:ab", dir.path(), 1).is_ok());
        let e = ensure_room("sha256:ab", dir.path(), u64::MAX).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "no space left for layer sha256:ab (needs {}, free ",
                u64::MAX
            )),
            "{text}"
        );
        assert!(free > 0);
    }
}

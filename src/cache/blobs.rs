//! Content-addressed blobs under `blobs/xx/HASH`: identical files are stored
//! once, and every read is verified against its name.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::Cache;
use super::store::write_atomic;
use crate::exec::{Chunk, Stream};
use crate::hash::hex;

impl Cache {
    /// The path of the blob with this hex hash.
    pub fn blob_path(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("00");
        self.dir.join("blobs").join(prefix).join(hash)
    }

    /// Stores `path`'s contents (whose hash is `hash`) if not already there.
    pub fn put_file(&self, hash: &str, path: &Path) -> io::Result<()> {
        let dest = self.blob_path(hash);
        if dest.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dest.parent().expect("blob parent"))?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))?;
        let mut src = std::fs::File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        }
        if hasher.finalize().to_hex().as_str() != hash {
            return Err(io::Error::other(format!(
                "{} changed while it was being stored",
                path.display()
            )));
        }
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// Stores bytes, returning their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<String> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let dest = self.blob_path(&hash);
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().expect("blob parent"))?;
            write_atomic(&dest, bytes)?;
        }
        Ok(hash)
    }

    /// Reads a blob and checks it against its hash.
    pub fn get_bytes(&self, hash: &str) -> io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(hash))?;
        if blake3::hash(&bytes).to_hex().as_str() != hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {hash} fails its integrity check"),
            ));
        }
        Ok(bytes)
    }

    /// Checks a blob exists and matches its hash, without keeping it.
    pub fn verify_blob(&self, hash: &str) -> io::Result<()> {
        let h = crate::hash::hash_file(&self.blob_path(hash))?;
        if hex(&h) != hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {hash} fails its integrity check"),
            ));
        }
        Ok(())
    }
}

/// Encodes captured output: per chunk, a stream byte, a length and the bytes.
pub fn encode_log(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.push(match c.stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        });
        out.extend_from_slice(&(c.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&c.data);
    }
    out
}

/// Decodes what [`encode_log`] wrote.
pub fn decode_log(mut bytes: &[u8]) -> io::Result<Vec<Chunk>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed captured output");
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let stream = match bytes[0] {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            _ => return Err(bad()),
        };
        let len = u32::from_le_bytes(
            bytes
                .get(1..5)
                .ok_or_else(bad)?
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let data = bytes.get(5..5 + len).ok_or_else(bad)?.to_vec();
        out.push(Chunk { stream, data });
        bytes = &bytes[5 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_round_trip_in_order() {
        let chunks = vec![
            Chunk {
                stream: Stream::Stdout,
                data: b"one\n".to_vec(),
            },
            Chunk {
                stream: Stream::Stderr,
                data: b"two".to_vec(),
            },
        ];
        assert_eq!(decode_log(&encode_log(&chunks)).unwrap(), chunks);
        assert!(decode_log(&[9, 0]).is_err());
    }

    #[test]
    fn blobs_are_verified_on_read() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::open(t.path()).unwrap();
        let h = cache.put_bytes(b"hello").unwrap();
        assert_eq!(cache.get_bytes(&h).unwrap(), b"hello");
        std::fs::write(cache.blob_path(&h), b"jello").unwrap();
        assert!(cache.get_bytes(&h).is_err());
        assert!(cache.verify_blob(&h).is_err());
    }
}

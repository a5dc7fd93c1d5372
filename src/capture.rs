//! Captured task output: the chunks a running command prints, in arrival
//! order, and the compact codec that stores them in the cache as one blob.

use std::io::{self, Read};

/// Which stream a chunk of task output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line (or final partial line) of task output, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How many bytes of captured output stay in memory; the rest goes to a
/// temporary file, so memory stays flat whatever a task prints.
pub const MEMORY_LIMIT: usize = 1 << 20;

/// Bytes a chunk occupies encoded: a stream byte, a length, the bytes.
const HEADER: usize = 5;

fn header(stream: Stream, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0] = match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    };
    h[1..].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Everything a command printed, in order: the first [`MEMORY_LIMIT`] bytes
/// as chunks in memory, the rest encoded in an unnamed temporary file (gone
/// with the process, however it ends). Cloning shares the file.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    memory: Vec<Chunk>,
    /// Bytes of output in `memory`.
    bytes: usize,
    /// What went past the limit (boxed: most output never gets there).
    more: Option<Box<Overflow>>,
}

/// Output past [`MEMORY_LIMIT`].
#[derive(Debug, Clone, Default)]
struct Overflow {
    /// Encoded chunks; `None` when no temporary file could be made.
    file: Option<std::sync::Arc<std::fs::File>>,
    /// Bytes of whole chunks in `file`.
    spilled: u64,
    /// Chunks in `file`.
    chunks: usize,
    /// Bytes that could not be written (a full disk): dropped, and said so
    /// on replay, rather than held in memory.
    lost: u64,
}

/// Reads a file from an offset with `pread`, leaving it shareable.
struct ReadAt<'a> {
    file: &'a std::fs::File,
    at: u64,
    end: u64,
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.at) as usize);
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Captured {
    /// Captured output made of these chunks.
    pub fn from_chunks(chunks: Vec<Chunk>) -> Captured {
        let mut c = Captured::default();
        for ch in chunks {
            c.push(ch.stream, &ch.data);
        }
        c
    }

    /// Appends one chunk.
    pub fn push(&mut self, stream: Stream, data: &[u8]) {
        if self.more.is_none() && self.bytes + data.len() <= MEMORY_LIMIT {
            self.bytes += data.len();
            self.memory.push(Chunk {
                stream,
                data: data.to_vec(),
            });
            return;
        }
        let more = self.more.get_or_insert_with(|| {
            let file = tempfile::tempfile()
                .map_err(|e| {
                    tracing::warn!("captured output past {MEMORY_LIMIT} bytes is dropped: {e}")
                })
                .ok()
                .map(std::sync::Arc::new);
            Box::new(Overflow {
                file,
                ..Overflow::default()
            })
        });
        let written = more.lost == 0
            && more.file.as_deref().is_some_and(|mut f| {
                use io::Write;
                let ok = f
                    .write_all(&header(stream, data.len()))
                    .and_then(|()| f.write_all(data))
                    .is_ok();
                // A failed write may leave a torn record: cut it off.
                ok || {
                    let _ = f.set_len(more.spilled);
                    false
                }
            });
        if written {
            more.spilled += (HEADER + data.len()) as u64;
            more.chunks += 1;
        } else {
            more.lost += data.len() as u64;
        }
    }

    /// How many chunks (lines) [`Captured::for_each`] gives.
    pub fn len(&self) -> usize {
        self.memory.len()
            + self
                .more
                .as_ref()
                .map_or(0, |m| m.chunks + usize::from(m.lost > 0))
    }

    /// Whether nothing was printed.
    pub fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.more.is_none()
    }

    /// Calls `f` with every chunk, in order, reading spilled ones back a
    /// buffer at a time.
    pub fn for_each(&self, f: &mut dyn FnMut(Stream, &[u8])) -> io::Result<()> {
        for c in &self.memory {
            f(c.stream, &c.data);
        }
        let Some(more) = &self.more else {
            return Ok(());
        };
        if let Some(file) = &more.file {
            let mut r = io::BufReader::with_capacity(
                64 * 1024,
                ReadAt {
                    file,
                    at: 0,
                    end: more.spilled,
                },
            );
            let mut data = Vec::new();
            while let Some(stream) = read_chunk(&mut r, &mut data)? {
                f(stream, &data);
            }
        }
        if more.lost > 0 {
            let note = format!("hotpass: {} bytes of output could not be kept\n", more.lost);
            f(Stream::Stderr, note.as_bytes());
        }
        Ok(())
    }

    /// Writes the encoded form (what [`Captured::read_from`] reads).
    pub fn write_to(&self, w: &mut dyn io::Write) -> io::Result<()> {
        let mut result = Ok(());
        self.for_each(&mut |stream, data| {
            if result.is_ok() {
                result = w
                    .write_all(&header(stream, data.len()))
                    .and_then(|()| w.write_all(data));
            }
        })?;
        result
    }

    /// The encoded form in memory (small outputs).
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.bytes + HEADER * self.memory.len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Whether it fits in memory (was never spilled).
    pub fn in_memory(&self) -> bool {
        self.more.is_none()
    }

    /// Reads an encoded form, keeping memory flat; anything malformed is
    /// `InvalidData`.
    pub fn read_from(r: &mut dyn io::Read) -> io::Result<Captured> {
        let mut r = io::BufReader::with_capacity(64 * 1024, r);
        let mut out = Captured::default();
        let mut data = Vec::new();
        while let Some(stream) = read_chunk(&mut r, &mut data)? {
            out.push(stream, &data);
        }
        Ok(out)
    }
}

/// Reads one encoded chunk into `data`: `None` at a clean end.
fn read_chunk(r: &mut dyn io::BufRead, data: &mut Vec<u8>) -> io::Result<Option<Stream>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed captured output");
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h).map_err(|_| bad())?;
    let stream = match h[0] {
        1 => Stream::Stdout,
        2 => Stream::Stderr,
        _ => return Err(bad()),
    };
    let len = u32::from_le_bytes(h[1..].try_into().expect("4 bytes")) as usize;
    data.clear();
    // Read what is there rather than trusting the length with an allocation.
    let got = io::Read::take(&mut *r, len as u64).read_to_end(data)?;
    if got != len {
        return Err(bad());
    }
    Ok(Some(stream))
}

/// Decodes an encoded form held in memory.
pub fn decode(bytes: &[u8]) -> io::Result<Vec<Chunk>> {
    let mut r = bytes;
    let mut out = Vec::new();
    let mut data = Vec::new();
    while let Some(stream) = read_chunk(&mut r, &mut data)? {
        out.push(Chunk {
            stream,
            data: std::mem::take(&mut data),
        });
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
        let c = Captured::from_chunks(chunks.clone());
        assert_eq!(decode(&c.encode().unwrap()).unwrap(), chunks);
        assert!(decode(&[9, 0]).is_err());
        assert!(decode(&[1, 255, 255, 255, 255]).is_err());
    }

    #[test]
    fn output_past_the_memory_limit_spills_and_replays_in_order() {
        let mut c = Captured::default();
        let line = vec![b'x'; 1000];
        let n = 3 * MEMORY_LIMIT / line.len();
        for i in 0..n {
            let stream = if i % 7 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            c.push(stream, &line);
        }
        assert!(!c.in_memory(), "spilled to disk");
        assert!(c.bytes <= MEMORY_LIMIT);
        assert_eq!(c.len(), n);
        let mut seen = 0;
        c.for_each(&mut |stream, data| {
            assert_eq!(stream == Stream::Stderr, seen % 7 == 0);
            assert_eq!(data.len(), 1000);
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, n);
        let mut encoded = Vec::new();
        c.write_to(&mut encoded).unwrap();
        let back = Captured::read_from(&mut encoded.as_slice()).unwrap();
        let mut again = Vec::new();
        back.write_to(&mut again).unwrap();
        assert_eq!(encoded, again);
        assert!(Captured::read_from(&mut &encoded[..encoded.len() - 1]).is_err());
    }
}

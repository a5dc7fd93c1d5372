//! Captured task output: the chunks a running command prints, in arrival
//! order, and the compact codec that stores them in the cache as one blob.

use std::io;

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

/// Encodes captured output: per chunk, a stream byte, a length and the bytes.
pub fn encode(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.data.len() + 5).sum());
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

/// Decodes what [`encode`] wrote; anything else is `InvalidData`.
pub fn decode(mut bytes: &[u8]) -> io::Result<Vec<Chunk>> {
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
        let end = 5usize.checked_add(len).ok_or_else(bad)?;
        let data = bytes.get(5..end).ok_or_else(bad)?.to_vec();
        out.push(Chunk { stream, data });
        bytes = &bytes[end..];
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
        assert_eq!(decode(&encode(&chunks)).unwrap(), chunks);
        assert!(decode(&[9, 0]).is_err());
        assert!(decode(&[1, 255, 255, 255, 255]).is_err());
    }
}

//! The names inside an xbstream, checked before `mbstream -x` sees them.
//!
//! `mbstream`/`xbstream -x -C DIR` writes each chunk to the path the stream names, joined
//! to `DIR` as given: `../x` and `/etc/x` land outside the data directory (tried with
//! MariaDB 10.11's `mbstream`). The stream comes from a snapshot, and a snapshot may come
//! from a hostile host sharing the repository, so `restore-physical` passes every byte
//! through [`StreamNames`] on its way to the extractor and stops at the first chunk whose
//! path is not plain and relative, before the extractor has read that chunk.
//!
//! The format (`extra/mariabackup/xbstream.h`), a sequence of chunks:
//! magic `XBSTCK01` (8), flags (1), type (1: `P` payload, `E` end of file), path length
//! (4, little-endian, below 512), path; then for `P` only: payload length (8), payload
//! offset (8), CRC-32 (4), payload. The check is strict where the extractor is lenient: it
//! accepts only these two types and flags 0 or 1 (ignorable), so that what it parses is
//! exactly what the extractor parses.

/// Longest path a chunk may name (`FN_REFLEN` is 512 and the extractor refuses `>=`).
const MAX_PATH: usize = 511;
const MAGIC: &[u8; 8] = b"XBSTCK01";
/// Magic, flags, type and path length.
const FIXED_HEADER: usize = 8 + 1 + 1 + 4;
/// Payload length, payload offset and checksum.
const PAYLOAD_HEADER: usize = 8 + 8 + 4;

/// Why a stream was refused; `offset` is where its chunk starts in the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("byte {offset}: not an xbstream chunk (no XBSTCK01 magic)")]
    BadMagic { offset: u64 },
    #[error(
        "byte {offset}: chunk type {kind:#04x} with flags {flags:#04x} is not one arca checks (only P and E)"
    )]
    UnknownChunk { offset: u64, kind: u8, flags: u8 },
    #[error("byte {offset}: a chunk names a path of {len} bytes (at most {MAX_PATH})")]
    PathTooLong { offset: u64, len: u64 },
    #[error(
        "byte {offset}: a chunk names {path:?}, which is not a plain relative path; the stream would write outside the data directory"
    )]
    UnsafePath { offset: u64, path: String },
    #[error("the stream ends inside a chunk (at byte {offset})")]
    Truncated { offset: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Collecting the fixed header.
    Fixed,
    /// Collecting a path of this many bytes; `payload` for `P` chunks.
    Path { len: usize, payload: bool },
    /// Collecting payload length, offset and checksum.
    PayloadHeader,
    /// Passing over this many payload bytes.
    Payload { left: u64 },
}

/// An incremental parser of an xbstream that checks every chunk's path.
#[derive(Debug)]
pub struct StreamNames {
    part: Part,
    pending: Vec<u8>,
    /// Bytes consumed so far.
    offset: u64,
    /// Where the current chunk started.
    chunk_start: u64,
    chunks: u64,
}

impl Default for StreamNames {
    fn default() -> Self {
        StreamNames {
            part: Part::Fixed,
            pending: Vec::with_capacity(FIXED_HEADER + MAX_PATH),
            offset: 0,
            chunk_start: 0,
            chunks: 0,
        }
    }
}

/// True when `path` is plain and relative: not empty, no leading `/`, no `..` component,
/// no NUL byte (the extractor would cut the name there).
pub fn is_plain_relative(path: &[u8]) -> bool {
    !path.is_empty()
        && path[0] != b'/'
        && !path.contains(&0)
        && path.split(|&b| b == b'/').all(|c| c != b"..")
}

impl StreamNames {
    /// Checks the next bytes of the stream. After an error, the caller must stop passing
    /// bytes on: the chunk at fault has not been fully seen by the extractor.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), StreamError> {
        while !data.is_empty() {
            if let Part::Payload { left } = self.part {
                let take = left.min(data.len() as u64);
                data = &data[take as usize..];
                self.offset += take;
                self.part = if take == left {
                    self.next_chunk()
                } else {
                    Part::Payload { left: left - take }
                };
                continue;
            }
            let want = match self.part {
                Part::Fixed => FIXED_HEADER,
                Part::Path { len, .. } => len,
                Part::PayloadHeader => PAYLOAD_HEADER,
                Part::Payload { .. } => 0,
            };
            let take = (want - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.offset += take as u64;
            if self.pending.len() == want {
                self.part = self.advance()?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// What comes after the complete `pending` part.
    fn advance(&mut self) -> Result<Part, StreamError> {
        let offset = self.chunk_start;
        match self.part {
            Part::Fixed => {
                let h = &self.pending;
                if &h[..8] != MAGIC {
                    return Err(StreamError::BadMagic { offset });
                }
                let (flags, kind) = (h[8], h[9]);
                let payload = match kind {
                    b'P' => true,
                    b'E' => false,
                    _ => {
                        return Err(StreamError::UnknownChunk {
                            offset,
                            kind,
                            flags,
                        });
                    }
                };
                if flags > 1 {
                    return Err(StreamError::UnknownChunk {
                        offset,
                        kind,
                        flags,
                    });
                }
                let len = u32::from_le_bytes([h[10], h[11], h[12], h[13]]) as usize;
                if len > MAX_PATH {
                    return Err(StreamError::PathTooLong {
                        offset,
                        len: len as u64,
                    });
                }
                // An empty path is refused by the check below.
                Ok(Part::Path { len, payload })
            }
            Part::Path { payload, .. } => {
                if !is_plain_relative(&self.pending) {
                    return Err(StreamError::UnsafePath {
                        offset,
                        path: String::from_utf8_lossy(&self.pending).into_owned(),
                    });
                }
                Ok(if payload {
                    Part::PayloadHeader
                } else {
                    self.next_chunk()
                })
            }
            Part::PayloadHeader => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.pending[..8]);
                Ok(match u64::from_le_bytes(len) {
                    0 => self.next_chunk(),
                    left => Part::Payload { left },
                })
            }
            Part::Payload { .. } => Ok(self.next_chunk()),
        }
    }

    fn next_chunk(&mut self) -> Part {
        self.chunks += 1;
        self.chunk_start = self.offset;
        Part::Fixed
    }

    /// Chunks seen whole so far.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Checks that the stream ended between two chunks.
    pub fn finish(&self) -> Result<(), StreamError> {
        if self.part == Part::Fixed && self.pending.is_empty() {
            Ok(())
        } else {
            Err(StreamError::Truncated {
                offset: self.offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(kind: u8, path: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut c = MAGIC.to_vec();
        c.push(0);
        c.push(kind);
        c.extend_from_slice(&(path.len() as u32).to_le_bytes());
        c.extend_from_slice(path);
        if kind == b'P' {
            c.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            c.extend_from_slice(&0u64.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(payload);
        }
        c
    }

    fn stream(paths: &[&[u8]]) -> Vec<u8> {
        let mut s = Vec::new();
        for p in paths {
            s.extend(chunk(b'P', p, b"some bytes"));
            s.extend(chunk(b'P', p, b""));
            s.extend(chunk(b'E', p, b""));
        }
        s
    }

    fn check_whole(s: &[u8]) -> Result<u64, StreamError> {
        let mut n = StreamNames::default();
        n.feed(s)?;
        n.finish()?;
        Ok(n.chunks())
    }

    #[test]
    fn plain_names_pass_and_every_chunk_is_counted() {
        let s = stream(&[b"ibdata1", b"mysql/user.MAI", b"./backup-my.cnf", b"a..b"]);
        assert_eq!(check_whole(&s), Ok(12));
    }

    #[test]
    fn names_leaving_the_directory_are_refused_at_their_chunk() {
        for bad in [&b"../e"[..], b"/tmp/f", b"a/../../b", b"..", b"", b"a\0b"] {
            let good = stream(&[b"ibdata1"]);
            let mut s = good.clone();
            s.extend(chunk(b'P', bad, b"x"));
            let e = check_whole(&s).unwrap_err();
            assert!(
                matches!(&e, StreamError::UnsafePath { offset, .. } if *offset == good.len() as u64),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn other_chunk_types_bad_magic_long_paths_and_truncation_are_refused() {
        let mut s = chunk(b'P', b"a", b"x");
        s[9] = b'S';
        assert!(matches!(
            check_whole(&s),
            Err(StreamError::UnknownChunk { .. })
        ));
        let mut s = chunk(b'P', b"a", b"x");
        s[8] = 2;
        assert!(matches!(
            check_whole(&s),
            Err(StreamError::UnknownChunk { .. })
        ));
        let mut s = chunk(b'P', b"a", b"x");
        s[0] = b'Y';
        assert_eq!(check_whole(&s), Err(StreamError::BadMagic { offset: 0 }));
        let long = vec![b'a'; 512];
        assert!(matches!(
            check_whole(&chunk(b'P', &long, b"")),
            Err(StreamError::PathTooLong { len: 512, .. })
        ));
        let s = chunk(b'P', b"a", b"xyz");
        assert!(matches!(
            check_whole(&s[..s.len() - 1]),
            Err(StreamError::Truncated { .. })
        ));
    }

    proptest! {
        /// Any split of a stream into pieces gives the verdict of the whole.
        #[test]
        fn pieces_give_the_verdict_of_the_whole(
            names in prop::collection::vec(
                prop::sample::select(vec![&b"a"[..], b"d/f", b"../x", b"/abs", b".", b"x/.."]),
                1..6,
            ),
            cuts in prop::collection::vec(0usize..400, 0..12),
        ) {
            let s = stream(&names);
            let whole = check_whole(&s);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(s.len())).collect();
            cuts.sort_unstable();
            let mut n = StreamNames::default();
            let mut last = 0;
            let mut verdict = Ok(());
            for c in cuts.into_iter().chain([s.len()]) {
                verdict = n.feed(&s[last..c]);
                if verdict.is_err() {
                    break;
                }
                last = c;
            }
            let pieces = verdict.and_then(|()| n.finish()).map(|()| n.chunks());
            prop_assert_eq!(pieces, whole);
        }
    }
}

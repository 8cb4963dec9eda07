//! Content-defined chunking: FastCDC (2020) over a keyed gear table, streamed from a reader.
//!
//! The gear table is derived from the repository's chunker key, so chunk boundaries depend
//! on a secret and do not fingerprint known files. The reader is consumed in large reads;
//! memory stays at about twice the maximum chunk size whatever the input size.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut_gear, select_masks};

use crate::format::ChunkerParams;

/// The keyed gear table and masks of one repository.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("params", &self.params)
            .finish()
    }
}

impl Chunker {
    /// Parameters are clamped to what FastCDC accepts (even sizes, min <= avg <= max).
    pub fn new(params: ChunkerParams, key: &[u8; 32]) -> Chunker {
        let even = |v: u32, lo: usize, hi: usize| ((v as usize).clamp(lo, hi) & !1) as u32;
        let min = even(
            params.min_size,
            fastcdc::v2020::MINIMUM_MIN,
            fastcdc::v2020::MINIMUM_MAX,
        );
        let avg = even(
            params.avg_size,
            fastcdc::v2020::AVERAGE_MIN,
            fastcdc::v2020::AVERAGE_MAX,
        )
        .max(min);
        let max = even(
            params.max_size,
            fastcdc::v2020::MAXIMUM_MIN,
            fastcdc::v2020::MAXIMUM_MAX,
        )
        .max(avg);
        let params = ChunkerParams {
            min_size: min,
            avg_size: avg,
            max_size: max,
        };
        let mut bytes = [0u8; 256 * 8];
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(b"arca chunker gear table v1");
        h.finalize_xof().fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            gear[i] = u64::from_le_bytes(w);
            gear_ls[i] = gear[i] << 1;
        }
        let (mask_s, mask_l) = select_masks(avg as usize, Normalization::Level1);
        Chunker {
            params,
            gear,
            gear_ls,
            mask_s,
            mask_l,
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the next chunk at the start of `data`; `data` must hold at least
    /// `max_size` bytes unless it is the end of the stream.
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, n) = cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        n.max(1).min(data.len())
    }

    /// Chunks a reader; call [`ChunkStream::next_chunk`] until it returns `None`.
    pub fn stream<R: Read>(&self, reader: R) -> ChunkStream<'_, R> {
        self.stream_with_buffer(reader, Vec::new())
    }

    /// Like [`Chunker::stream`], reusing `buf` (see [`ChunkStream::into_buffer`]).
    pub fn stream_with_buffer<R: Read>(&self, reader: R, mut buf: Vec<u8>) -> ChunkStream<'_, R> {
        buf.clear();
        ChunkStream {
            chunker: self,
            reader,
            buf,
            start: 0,
            eof: false,
        }
    }
}

/// Chunks of one stream, each an owned buffer.
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    fn fill(&mut self) -> io::Result<()> {
        let max = self.chunker.params.max_size as usize;
        if self.buf.len() - self.start >= max || self.eof {
            return Ok(());
        }
        // Move the rest (less than one maximal chunk) to the front, then read up to two
        // maximal chunks; small files read only what they hold.
        self.buf.drain(..self.start);
        self.start = 0;
        if self.buf.capacity() < 2 * max {
            self.buf.reserve_exact(2 * max - self.buf.len());
        }
        let want = (2 * max - self.buf.len()) as u64;
        let n = loop {
            match (&mut self.reader).take(want).read_to_end(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if (n as u64) < want {
            self.eof = true;
        }
        Ok(())
    }

    /// Gives back the buffer for reuse by the next stream.
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.buf.clear();
        self.buf
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill()?;
        let rest = &self.buf[self.start..];
        if rest.is_empty() {
            return Ok(None);
        }
        let n = self.chunker.next_cut(rest);
        let chunk = rest[..n].to_vec();
        self.start += n;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        }
    }

    fn chunks(c: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
        let mut s = c.stream(data);
        let mut out = Vec::new();
        while let Some(ch) = s.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn boundaries_depend_on_key_and_resist_inserts() {
        let data = pseudo_random(400_000, 7);
        let a = Chunker::new(small(), &[1; 32]);
        let b = Chunker::new(small(), &[2; 32]);
        let ca = chunks(&a, &data);
        let cb = chunks(&b, &data);
        assert_ne!(
            ca.iter().map(Vec::len).collect::<Vec<_>>(),
            cb.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(ca.iter().all(|c| c.len() <= 16384));
        let mut shifted = data.clone();
        shifted.splice(200_000..200_000, pseudo_random(100, 9));
        let cs = chunks(&a, &shifted);
        let same = cs.iter().filter(|c| ca.contains(c)).count();
        assert!(
            same + 4 >= ca.len(),
            "{same} of {} chunks survive an insert",
            ca.len()
        );
    }

    proptest! {
        #[test]
        fn chunks_concatenate_to_input(data in proptest::collection::vec(any::<u8>(), 0..100_000), seed in any::<u64>()) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            let c = Chunker::new(small(), &key);
            let got = chunks(&c, &data);
            prop_assert_eq!(got.concat(), data);
            prop_assert!(got.iter().all(|c| !c.is_empty() && c.len() <= 16384));
        }
    }
}

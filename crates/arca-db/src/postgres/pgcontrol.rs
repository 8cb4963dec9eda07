//! `global/pg_control` of a file-level base backup: read last (after every other file of
//! the data directory, before `pg_backup_stop`, as pg_basebackup sends it last) and
//! accepted only when its CRC-32C verifies.
//!
//! The server rewrites pg_control in place (8192 bytes, the `ControlFileData` struct
//! zero-padded) at every checkpoint, restartpoint and, on a standby, whenever the minimum
//! recovery point advances; a read that meets such a write can see half of each version,
//! and a cluster restored with that copy refuses to start ("incorrect checksum in control
//! file"). PostgreSQL computes the CRC-32C (Castagnoli) over the struct up to its last
//! field, `crc` (`offsetof(ControlFileData, crc)` bytes), and stores it little-endian right
//! after them. The offset depends on the format (`pg_control_version`, bytes 8..12) and the
//! platform's alignment: the offsets known here are used for their version, any other
//! format is accepted where some 4-aligned offset holds the CRC of the bytes before it. A
//! copy that does not verify is read again (a torn read passes once the write is done);
//! one that never verifies fails the backup. On a standby this copy matters twice: recovery
//! from a standby's backup ends at the minimum recovery point recorded in the copied
//! pg_control, so it must be taken after every data file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crc::{CRC_32_ISCSI, Crc};

use super::{Error, Result};

/// The control file, relative to the data directory.
pub(crate) const CONTROL_FILE: &str = "global/pg_control";

/// CRC-32C (Castagnoli), PostgreSQL's `pg_crc32c`.
const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// `offsetof(ControlFileData, crc)` on 64-bit platforms, by `pg_control_version`:
/// 1300 is the format of PostgreSQL 13 to 16 (288 checked on a PostgreSQL 15 cluster
/// here, see the unit tests).
#[cfg(target_pointer_width = "64")]
const KNOWN_CRC_OFFSETS: &[(u32, usize)] = &[(1300, 288)];
#[cfg(not(target_pointer_width = "64"))]
const KNOWN_CRC_OFFSETS: &[(u32, usize)] = &[];

/// Offsets tried for formats not in [`KNOWN_CRC_OFFSETS`]: past the fixed header, within
/// any `ControlFileData` so far (under 512 bytes).
const SCAN_OFFSETS: std::ops::Range<usize> = 16..1024;

/// Reads of pg_control before the backup gives up on a copy that does not verify.
const READ_ATTEMPTS: u32 = 20;

/// A verified copy of pg_control and the file's metadata when it was read.
pub(crate) struct ControlFileCopy {
    pub bytes: Vec<u8>,
    pub metadata: std::fs::Metadata,
    /// Reads it took (1 unless a read met a write).
    pub attempts: u32,
}

/// Why a copy of pg_control is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    TooShort(usize),
    /// The CRC stored at the known offset of this format does not match.
    CrcMismatch {
        version: u32,
        offset: usize,
        stored: u32,
        computed: u32,
    },
    /// A format without a known offset and no offset where the CRC matches.
    NoCrcFound {
        version: u32,
    },
    /// The cluster is not the one the server reported.
    OtherCluster {
        found: u64,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::TooShort(n) => write!(f, "only {n} bytes"),
            Rejection::CrcMismatch {
                version,
                offset,
                stored,
                computed,
            } => write!(
                f,
                "incorrect CRC-32C (format {version}: stored {stored:08x} at byte {offset}, \
                 computed {computed:08x})"
            ),
            Rejection::NoCrcFound { version } => write!(
                f,
                "no valid CRC-32C found (format {version}, whose CRC offset arca does not know)"
            ),
            Rejection::OtherCluster { found } => {
                write!(f, "belongs to another cluster (system identifier {found})")
            }
        }
    }
}

/// The cluster's system identifier: the first field of pg_control.
pub(crate) fn system_identifier(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Whether `bytes` is a whole pg_control: returns where its CRC is. With
/// `system_identifier`, the copy must also be of that cluster.
pub(crate) fn verify(
    bytes: &[u8],
    system_identifier: Option<u64>,
) -> std::result::Result<usize, Rejection> {
    if bytes.len() < 16 {
        return Err(Rejection::TooShort(bytes.len()));
    }
    let version = u32_at(bytes, 8).unwrap_or(0);
    let known = KNOWN_CRC_OFFSETS
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, o)| *o);
    let offset = match known {
        Some(offset) => {
            let stored = u32_at(bytes, offset).ok_or(Rejection::TooShort(bytes.len()))?;
            let computed = CRC32C.checksum(&bytes[..offset]);
            if stored != computed {
                return Err(Rejection::CrcMismatch {
                    version,
                    offset,
                    stored,
                    computed,
                });
            }
            offset
        }
        None => {
            let mut digest = CRC32C.digest();
            let mut done = 0;
            let mut found = None;
            for offset in SCAN_OFFSETS.step_by(4) {
                let Some(stored) = u32_at(bytes, offset) else {
                    break;
                };
                digest.update(&bytes[done..offset]);
                done = offset;
                if digest.clone().finalize() == stored {
                    found = Some(offset);
                    break;
                }
            }
            found.ok_or(Rejection::NoCrcFound { version })?
        }
    };
    let found = self::system_identifier(bytes).unwrap_or_default();
    if system_identifier.is_some_and(|id| id != found) {
        return Err(Rejection::OtherCluster { found });
    }
    Ok(offset)
}

/// Reads `pgdata/global/pg_control` until a copy verifies (at most [`READ_ATTEMPTS`]
/// reads, a few milliseconds apart); the metadata is the open file's, taken before the
/// read that verified.
pub(crate) fn read_verified(pgdata: &Path, system_identifier: u64) -> Result<ControlFileCopy> {
    read_verified_from(&pgdata.join(CONTROL_FILE), Some(system_identifier))
}

fn read_verified_from(path: &Path, system_identifier: Option<u64>) -> Result<ControlFileCopy> {
    let mut last = None;
    for attempt in 1..=READ_ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(Duration::from_millis(5 * u64::from(attempt.min(10))));
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
        let mut bytes = Vec::with_capacity(8192);
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        match verify(&bytes, system_identifier) {
            Ok(_) => {
                return Ok(ControlFileCopy {
                    bytes,
                    metadata,
                    attempts: attempt,
                });
            }
            // Another cluster does not become this one by reading again.
            Err(r @ Rejection::OtherCluster { .. }) => return Err(rejected(path, &r, attempt)),
            Err(r) => last = Some(r),
        }
    }
    Err(rejected(
        path,
        &last.unwrap_or(Rejection::TooShort(0)),
        READ_ATTEMPTS,
    ))
}

fn rejected(path: &Path, why: &Rejection, attempts: u32) -> Error {
    Error::ControlFile {
        path: PathBuf::from(path),
        reason: format!(
            "{why} in {attempts} reads; a restored cluster would not start with this copy"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// global/pg_control of a cluster made by PostgreSQL 15's initdb.
    const PG15: &[u8] = include_bytes!("testdata/pg_control-15");

    #[test]
    fn a_real_pg_control_verifies_at_its_known_offset() {
        assert_eq!(PG15.len(), 8192);
        assert_eq!(u32_at(PG15, 8), Some(1300));
        assert_eq!(
            verify(PG15, Some(system_identifier(PG15).unwrap())),
            Ok(288)
        );
        assert_eq!(verify(PG15, None), Ok(288));
    }

    #[test]
    fn a_flipped_byte_fails_the_check() {
        for at in [0, 20, 100, 287, 288, 291] {
            let mut bad = PG15.to_vec();
            bad[at] ^= 0x40;
            let r = verify(&bad, None);
            assert!(
                matches!(r, Err(Rejection::CrcMismatch { offset: 288, .. })),
                "byte {at}: {r:?}"
            );
        }
        // The zero padding after the struct is not covered (as in PostgreSQL).
        let mut pad = PG15.to_vec();
        pad[4000] ^= 1;
        assert_eq!(verify(&pad, None), Ok(288));
    }

    #[test]
    fn a_torn_copy_fails_the_check() {
        // The first half of a newer write over the rest of the older one.
        let mut newer = PG15.to_vec();
        newer[40] ^= 0x10; // checkPoint moved
        let crc = CRC32C.checksum(&newer[..288]);
        newer[288..292].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(verify(&newer, None), Ok(288));
        let mut torn = newer[..128].to_vec();
        torn.extend_from_slice(&PG15[128..]);
        assert!(matches!(
            verify(&torn, None),
            Err(Rejection::CrcMismatch { .. })
        ));
    }

    #[test]
    fn other_clusters_short_files_and_unknown_formats() {
        let id = system_identifier(PG15).unwrap();
        assert_eq!(
            verify(PG15, Some(id + 1)),
            Err(Rejection::OtherCluster { found: id })
        );
        assert_eq!(verify(&PG15[..8], None), Err(Rejection::TooShort(8)));
        assert!(verify(&PG15[..200], None).is_err());
        // An unknown format is found by its CRC wherever it is.
        let mut other = PG15.to_vec();
        other[8..12].copy_from_slice(&1900u32.to_le_bytes());
        other[288..296].fill(0);
        let crc = CRC32C.checksum(&other[..296]);
        other[296..300].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(verify(&other, None), Ok(296));
        other[50] ^= 1;
        assert_eq!(
            verify(&other, None),
            Err(Rejection::NoCrcFound { version: 1900 })
        );
    }

    #[test]
    fn a_copy_being_rewritten_is_read_again_until_it_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pg_control");
        let mut torn = PG15.to_vec();
        torn[100] ^= 0xff;
        std::fs::write(&path, &torn).unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                std::fs::write(&path, PG15).unwrap();
            })
        };
        let copy = read_verified_from(&path, Some(system_identifier(PG15).unwrap())).unwrap();
        writer.join().unwrap();
        assert_eq!(copy.bytes, PG15);
        assert!(copy.attempts > 1, "{}", copy.attempts);
        assert_eq!(copy.metadata.len(), 8192);

        // One that never verifies fails, naming the file.
        std::fs::write(&path, &torn).unwrap();
        let err = read_verified_from(&path, None).err().unwrap().to_string();
        assert!(err.contains("pg_control"), "{err}");
        assert!(err.contains("incorrect CRC-32C"), "{err}");
        assert!(err.contains("would not start"), "{err}");
    }
}

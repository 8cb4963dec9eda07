//! WAL file names and positions: segment names (`TTTTTTTTXXXXXXXXYYYYYYYY`), history
//! (`TTTTTTTT.history`), backup history (`...YYYYYYYY.OOOOOOOO.backup`) and partial
//! (`....partial`) files, and LSNs (`X/Y`).

use std::fmt;

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

/// A WAL position that is not `X/Y` with X and Y 32-bit hexadecimal numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {0:?}: expected X/Y in hex")]
pub struct LsnError(pub String);

impl std::str::FromStr for Lsn {
    type Err = LsnError;
    fn from_str(s: &str) -> Result<Lsn, LsnError> {
        let bad = || LsnError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// What an archived file name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalName {
    /// A WAL segment: timeline and the two 32-bit halves of its position.
    Segment { timeline: u32, log: u32, seg: u32 },
    /// The last, incomplete segment of a timeline that a promotion ended.
    Partial { timeline: u32, log: u32, seg: u32 },
    /// A backup history file (written by pg_backup_stop).
    Backup { timeline: u32, log: u32, seg: u32 },
    /// A timeline history file.
    History { timeline: u32 },
}

fn hex32(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn seg3(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 {
        return None;
    }
    Some((hex32(&s[..8])?, hex32(&s[8..16])?, hex32(&s[16..])?))
}

impl WalName {
    /// Parses a WAL file name; `None` for anything else.
    pub fn parse(name: &str) -> Option<WalName> {
        if let Some(t) = name.strip_suffix(".history") {
            return Some(WalName::History {
                timeline: hex32(t)?,
            });
        }
        if let Some(s) = name.strip_suffix(".partial") {
            let (timeline, log, seg) = seg3(s)?;
            return Some(WalName::Partial { timeline, log, seg });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (s, off) = s.split_once('.')?;
            hex32(off)?;
            let (timeline, log, seg) = seg3(s)?;
            return Some(WalName::Backup { timeline, log, seg });
        }
        let (timeline, log, seg) = seg3(name)?;
        Some(WalName::Segment { timeline, log, seg })
    }

    pub fn timeline(&self) -> u32 {
        match *self {
            WalName::Segment { timeline, .. }
            | WalName::Partial { timeline, .. }
            | WalName::Backup { timeline, .. }
            | WalName::History { timeline } => timeline,
        }
    }

    /// The segment number (position / segment size), for all but history files.
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        match *self {
            WalName::Segment { log, seg, .. }
            | WalName::Partial { log, seg, .. }
            | WalName::Backup { log, seg, .. } => {
                Some(log as u64 * segments_per_log(segment_size) + seg as u64)
            }
            WalName::History { .. } => None,
        }
    }
}

fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size.max(1)
}

/// The name of segment `segno` on `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u64) -> String {
    let per = segments_per_log(segment_size);
    format!("{:08X}{:08X}{:08X}", timeline, segno / per, segno % per)
}

/// What the first page header of a segment says: (system identifier, segment size).
pub fn segment_header(data: &[u8]) -> Option<(u64, u32)> {
    // XLogLongPageHeaderData: magic u16, info u16, tli u32, pageaddr u64, rem_len u32,
    // padding, sysid u64 at 24, seg_size u32 at 32, xlog_blcksz u32 at 36.
    const XLP_LONG_HEADER: u16 = 0x0002;
    if data.len() < 40 {
        return None;
    }
    let info = u16::from_le_bytes([data[2], data[3]]);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let sysid = u64::from_le_bytes(data[24..32].try_into().ok()?);
    let seg_size = u32::from_le_bytes(data[32..36].try_into().ok()?);
    Some((sysid, seg_size))
}

/// Parses a timeline history file: `(parent timeline, switch point)` lines, oldest first.
pub fn parse_history(text: &str) -> Vec<(u32, Lsn)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut f = l.split_whitespace();
            let tli: u32 = f.next()?.parse().ok()?;
            let lsn: Lsn = f.next()?.parse().ok()?;
            Some((tli, lsn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = WalName::parse("0000000100000002000000FF").unwrap();
        assert_eq!(
            n,
            WalName::Segment {
                timeline: 1,
                log: 2,
                seg: 255
            }
        );
        let segno = n.segno(16 << 20).unwrap();
        assert_eq!(segno, 2 * 256 + 255);
        assert_eq!(segment_name(1, segno, 16 << 20), "0000000100000002000000FF");
        assert_eq!(
            WalName::parse("00000002.history"),
            Some(WalName::History { timeline: 2 })
        );
        assert!(matches!(
            WalName::parse("000000010000000000000002.00000028.backup"),
            Some(WalName::Backup { seg: 2, .. })
        ));
        assert!(matches!(
            WalName::parse("000000010000000000000005.partial"),
            Some(WalName::Partial { seg: 5, .. })
        ));
        assert_eq!(WalName::parse("RECOVERYXLOG"), None);
        assert_eq!(WalName::parse("0000000100000000000000G1"), None);
    }

    #[test]
    fn lsn_parse_and_history() {
        let l: Lsn = "1/2000028".parse().unwrap();
        assert_eq!(l.0, (1u64 << 32) | 0x2000028);
        assert_eq!(l.to_string(), "1/2000028");
        assert!("12".parse::<Lsn>().is_err());
        let h = parse_history("1\t0/3000148\tno recovery target specified\n\n");
        assert_eq!(h, vec![(1, Lsn(0x3000148))]);
    }
}

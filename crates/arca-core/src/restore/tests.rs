//! Unit tests of the restorer's parts.

use super::fetch::{PackBlobs, WORK_PLAIN_BYTES, split_work};
use super::plain_length;
use crate::format::{BlobEntry, BlobKind};
use crate::id::Id;

fn blob(n: u8, offset: u32, raw_length: u32) -> (BlobEntry, Vec<(usize, u64)>) {
    let entry = BlobEntry {
        kind: BlobKind::Data,
        id: Id([n; 32]),
        offset,
        length: 1000,
        raw_length,
    };
    (entry, vec![(n as usize, 0)])
}

#[test]
fn work_is_split_by_plaintext_in_offset_order_and_keeps_every_blob() {
    let mib = 1u32 << 20;
    // A pack of very compressible blobs (4 MiB of plaintext each), listed out of order,
    // and a pack with one blob larger than a unit.
    let a = Id([1; 32]);
    let b = Id([2; 32]);
    let big: PackBlobs = (0..10u8)
        .rev()
        .map(|i| blob(i, u32::from(i) * 1000, 4 * mib))
        .collect();
    let huge: PackBlobs = vec![blob(20, 0, 40 * mib), blob(21, 1000, 0)];
    let units = split_work(vec![(a, big), (b, huge)], WORK_PLAIN_BYTES);
    let sizes: Vec<(Id, usize)> = units.iter().map(|(p, u)| (*p, u.len())).collect();
    assert_eq!(sizes, vec![(a, 4), (a, 4), (a, 2), (b, 1), (b, 1)]);
    for (_, unit) in &units {
        let plain: u64 = unit.iter().map(|(e, _)| plain_length(e)).sum();
        assert!(unit.len() == 1 || plain <= WORK_PLAIN_BYTES, "{plain}");
        assert!(unit.windows(2).all(|w| w[0].0.offset < w[1].0.offset));
    }
    let mut ids: Vec<u8> = units
        .iter()
        .flat_map(|(_, u)| u.iter().map(|(e, _)| e.id.0[0]))
        .collect();
    assert_eq!(
        ids[..10],
        (0..10).collect::<Vec<u8>>()[..],
        "pack order, then offsets"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
}

//! Snapshot objects (JSON, after the seal is opened). Whatever parses must serialize to
//! JSON that parses to the same thing.
#![no_main]

use arca_core::format::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: arca_fuzz::write_seeds("snapshot_json"),
    |data: &[u8]| {
    let Ok(s) = serde_json::from_slice::<Snapshot>(data) else { return };
    let _ = s.is_incomplete();
    let once = serde_json::to_vec(&s).expect("snapshot to JSON");
    let again: Snapshot = serde_json::from_slice(&once).expect("snapshot JSON re-parses");
    assert_eq!(serde_json::to_vec(&again).expect("snapshot to JSON"), once);
});

//! The xbstream name check of `mysql restore-physical` on arbitrary bytes cut at arbitrary
//! places: it never panics, and a stream cut into pieces gets the verdict of the whole
//! (so no split of the blobs a snapshot is read in can slip a name past it).
#![no_main]

use arca_db::mysql::xbstream::StreamNames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (stream, cuts) = input;
    let mut whole = StreamNames::default();
    let whole_verdict = whole.feed(&stream).and_then(|()| whole.finish());

    let mut cuts: Vec<usize> = cuts
        .into_iter()
        .map(|c| usize::from(c).min(stream.len()))
        .collect();
    cuts.sort_unstable();
    let mut pieces = StreamNames::default();
    let mut last = 0;
    let mut verdict = Ok(());
    for c in cuts.into_iter().chain([stream.len()]) {
        verdict = pieces.feed(&stream[last..c]);
        if verdict.is_err() {
            break;
        }
        last = c;
    }
    let verdict = verdict.and_then(|()| pieces.finish());
    assert_eq!(verdict, whole_verdict);
    if whole_verdict.is_ok() {
        assert_eq!(pieces.chunks(), whole.chunks());
    }
});

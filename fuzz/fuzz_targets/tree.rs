//! `decode_tree` on a (decrypted) tree blob; whatever decodes must encode back to the
//! same tree, in postcard and in JSON.
#![no_main]

use arca_core::format::Tree;
use arca_core::repo::{decode_tree, encode_tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: arca_fuzz::write_seeds("tree"),
    |data: &[u8]| {
    let Ok(tree) = decode_tree(data) else { return };
    assert_eq!(decode_tree(&encode_tree(&tree)).expect("re-encoded tree"), tree);
    let json = serde_json::to_vec(&tree).expect("tree to JSON");
    let back: Tree = serde_json::from_slice(&json).expect("tree from JSON");
    assert_eq!(back, tree);
    for n in &tree.nodes {
        let safe = n.has_safe_name();
        assert_eq!(safe, !n.name.is_empty()
            && n.name != b"."
            && n.name != b".."
            && !n.name.contains(&b'/')
            && !n.name.contains(&0));
        let _ = n.name_lossy();
    }
});

//! Property test of restore planning over made-up trees: hostile names (`..`, `/`, NUL,
//! empty, repeats), unreadable listings, hard links across directories and filters; every
//! plan keeps [`Plan::check`]'s invariants and plans exactly the safe entries. The fuzz
//! target `restore_plan` runs the same checks far longer.

use std::collections::HashMap;

use proptest::prelude::*;

use super::plan::{Filters, TreeLoader, plan};
use crate::error::{Error, Result};
use crate::format::{Node, NodeKind, Tree};
use crate::id::Id;

/// Trees by id; a missing id is an unreadable listing.
struct MadeUp(HashMap<Id, Tree>);

impl TreeLoader for MadeUp {
    fn load_tree(&self, id: &Id) -> Result<Tree> {
        self.0
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("no tree {id}")))
    }
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'.')], 1..3),
        1 => Just(b"..".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"x/y".to_vec()),
        1 => Just(b"n\0".to_vec()),
    ]
}

/// One made-up entry: name, kind (0 dir, 1 file, 2 symlink), hard-link group.
type Entry = (Vec<u8>, u8, u8);

/// Turns layers of entries into trees: a directory in layer `i` gets layer `i + 1`'s tree
/// `k` (or none that exists, an unreadable listing), so the trees form no cycle.
fn build(layers: &[Vec<Vec<Entry>>]) -> (MadeUp, Node) {
    let id = |layer: usize, k: usize| {
        let mut b = [0u8; 32];
        b[0] = layer as u8;
        b[1] = k as u8;
        Id(b)
    };
    let mut trees = HashMap::new();
    for (layer, trees_of_layer) in layers.iter().enumerate() {
        for (k, entries) in trees_of_layer.iter().enumerate() {
            let mut nodes = Vec::new();
            for (j, (n, kind, group)) in entries.iter().enumerate() {
                let kind = match kind % 3 {
                    0 => NodeKind::Dir,
                    1 => NodeKind::File,
                    _ => NodeKind::Symlink,
                };
                let mut node = Node::new(n.clone(), kind);
                match node.kind {
                    NodeKind::Dir => {
                        let next = layers.get(layer + 1).map_or(0, |l| l.len() + 1);
                        node.subtree = Some(id(layer + 1, (j + k) % next.max(1)));
                    }
                    NodeKind::File if *group < 3 => {
                        node.nlink = 2;
                        node.inode = u64::from(*group);
                    }
                    NodeKind::Symlink => node.link_target = Some(b"../../outside".to_vec()),
                    _ => {}
                }
                nodes.push(node);
            }
            trees.insert(id(layer, k), Tree { nodes });
        }
    }
    let mut root = Node::new(Vec::new(), NodeKind::Dir);
    root.subtree = Some(id(0, 0));
    (MadeUp(trees), root)
}

fn layers() -> impl Strategy<Value = Vec<Vec<Vec<Entry>>>> {
    let entry = (name(), any::<u8>(), 0u8..8);
    let tree = proptest::collection::vec(entry, 0..6);
    proptest::collection::vec(proptest::collection::vec(tree, 1..4), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_names_only_plain_distinct_paths_in_tree_order(
        layers in layers(),
        exclude in prop_oneof![Just(None), Just(Some("a".to_string())), Just(Some("b*".to_string()))],
        include in prop_oneof![Just(None), Just(Some("/a/b".to_string())), Just(Some("/*/a*".to_string()))],
    ) {
        let (trees, root) = build(&layers);
        let excludes: Vec<String> = exclude.into_iter().collect();
        let includes: Vec<String> = include.into_iter().collect();
        let filters = Filters::new(&includes, &excludes).unwrap();
        let p = plan(&trees, &root, std::path::Path::new("/"), &filters).unwrap();
        if let Err(e) = p.check() {
            prop_assert!(false, "{e}");
        }
        // An unsafe name in the root's listing (always readable) is reported.
        let root_unsafe = layers[0][0].iter().any(|(n, _, _)| {
            n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0)
        });
        prop_assert!(!root_unsafe || !p.errors.is_empty());
    }
}

/// Found by the fuzz target `restore_plan` (2026-12-04): an empty directory that an
/// include pattern leaves out was dropped from the plan, but its complete listing stayed,
/// naming a directory index that a later directory would take.
#[test]
fn a_directory_dropped_by_an_include_leaves_no_complete_listing_behind() {
    let empty = Id([1u8; 32]);
    let top = Id([2u8; 32]);
    let mut skipped = Node::new(b"skipped".to_vec(), NodeKind::Dir);
    skipped.subtree = Some(empty);
    let mut kept = Node::new(b"wanted".to_vec(), NodeKind::Dir);
    kept.subtree = Some(empty);
    let trees = MadeUp(HashMap::from([
        (empty, Tree::default()),
        (
            top,
            Tree {
                nodes: vec![skipped, kept],
            },
        ),
    ]));
    let mut root = Node::new(Vec::new(), NodeKind::Dir);
    root.subtree = Some(top);
    let filters = Filters::new(&["/wanted".to_string()], &[]).unwrap();
    let p = plan(&trees, &root, std::path::Path::new("/"), &filters).unwrap();
    p.check().unwrap();
    assert_eq!(p.dirs.len(), 1);
    assert_eq!(p.dirs[0].rel, std::path::Path::new("wanted"));
    // One listing is complete: the kept directory's (empty). The root's is not (an
    // entry was left out), and nothing names the dropped directory.
    assert_eq!(p.complete_dirs, vec![(Some(0), Vec::<Vec<u8>>::new())]);
}

#[test]
fn a_plan_with_an_escaping_path_fails_the_check() {
    use super::plan::{Plan, PlanFile};
    let mut p = Plan::default();
    for rel in ["../x", "/etc/passwd", "", "a/../../b", "x/.", "./x", "x//y"] {
        p.files = vec![PlanFile {
            rel: rel.into(),
            node: Node::new(b"x".to_vec(), NodeKind::File),
            parent: None,
            link_to: None,
        }];
        assert!(p.check().is_err(), "{rel:?} passed");
    }
    p.files[0].rel = "x".into();
    p.check().unwrap();
    p.files.push(p.files[0].clone());
    assert!(p.check().is_err(), "a repeated path passed");
}

#[test]
fn a_listing_that_contains_itself_stops_at_the_depth_limit() {
    use super::plan::MAX_DEPTH;
    // A forged listing whose directory is the listing itself: without a limit the planner
    // would recurse until the stack ran out.
    let id = Id([7u8; 32]);
    let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
    dir.subtree = Some(id);
    let file = Node::new(b"f".to_vec(), NodeKind::File);
    let trees = MadeUp(HashMap::from([(
        id,
        Tree {
            nodes: vec![dir, file],
        },
    )]));
    let mut root = Node::new(Vec::new(), NodeKind::Dir);
    root.subtree = Some(id);
    let filters = Filters::new(&[], &[]).unwrap();
    // Test threads have small stacks: this runs where restores run, in a spawned thread.
    let p = std::thread::spawn(move || plan(&trees, &root, "".as_ref(), &filters).unwrap())
        .join()
        .unwrap();
    assert_eq!(p.dirs.len(), MAX_DEPTH);
    assert_eq!(p.files.len(), MAX_DEPTH + 1);
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    assert!(
        p.errors[0]
            .reason
            .contains("nested deeper than 2048 levels")
    );
    p.check().unwrap();
}

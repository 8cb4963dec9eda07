//! Unit tests of [`Confined`]: nothing outside the root is reached through symlinks,
//! whatever the call.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;

struct Scene {
    _tmp: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

/// A target holding `link_dir -> outside/`, `link_file -> outside/victim` and a real
/// `dir/`; outside holds `victim` (mode 0600, "secret") and `inner/`.
fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(target.join("dir")).unwrap();
    fs::create_dir_all(outside.join("inner")).unwrap();
    fs::write(outside.join("victim"), b"secret").unwrap();
    fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&outside, target.join("link_dir")).unwrap();
    symlink(outside.join("victim"), target.join("link_file")).unwrap();
    Scene {
        _tmp: tmp,
        target,
        outside,
    }
}

/// How directories on the way are opened: `openat2`, or the walk of kernels without it.
#[derive(Clone, Copy)]
enum Walk {
    Openat2,
    Stepwise,
}

fn opened(target: &Path, walk: Walk) -> Confined {
    let c = Confined::open(target).unwrap();
    if let Walk::Stepwise = walk {
        c.openat2.store(false, Ordering::Relaxed);
    }
    c
}

fn victim_intact(s: &Scene) {
    let v = s.outside.join("victim");
    assert_eq!(fs::read(&v).unwrap(), b"secret");
    assert_eq!(fs::metadata(&v).unwrap().mode() & 0o7777, 0o600);
    let names: Vec<_> = fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(fs::read_dir(s.outside.join("inner")).unwrap().count(), 0);
}

fn nothing_is_reached_through_a_symlinked_directory(walk: Walk) {
    let s = scene();
    let c = opened(&s.target, walk);
    let through = Path::new("link_dir/victim");
    assert!(c.lstat(through).is_err());
    let e = c.open_file(through, FileAccess::ReadWrite).unwrap_err();
    assert!(
        e.to_string().contains("symbolic link stands in the way"),
        "{e}"
    );
    assert!(
        c.open_file(Path::new("link_dir/new"), FileAccess::WriteCreate)
            .is_err()
    );
    assert!(c.create_dir(Path::new("link_dir/inner/x")).is_err());
    assert!(c.remove(through, EntryKind::File).is_err());
    assert!(c.remove_tree(Path::new("link_dir/inner")).is_err());
    assert!(c.symlink(b"/etc", Path::new("link_dir/l")).is_err());
    assert!(c.mknod(Path::new("link_dir/f"), NodeKind::Fifo, 0).is_err());
    assert!(c.list(Path::new("link_dir")).is_err());
    victim_intact(&s);
}

fn a_symlink_as_last_component_is_neither_opened_nor_given_metadata(walk: Walk) {
    let s = scene();
    let c = opened(&s.target, walk);
    let link = Path::new("link_file");
    for access in [
        FileAccess::Read,
        FileAccess::ReadWrite,
        FileAccess::WriteCreate,
    ] {
        assert!(c.open_file(link, access).is_err(), "{access:?}");
    }
    assert_eq!(c.lstat(link).unwrap().unwrap().kind, EntryKind::Symlink);
    // Metadata for a symlink node: the link's own, the victim keeps 0600.
    let mut node = Node::new(b"link_file".to_vec(), NodeKind::Symlink);
    node.mode = 0o777;
    node.mtime_ns = 1_000_000_000;
    c.apply_metadata(
        link,
        &node,
        &ApplyOptions {
            ownership: false,
            xattrs: false,
        },
    )
    .unwrap();
    // A file node applied where a symlink stands: refused, not followed.
    let mut file = Node::new(b"link_file".to_vec(), NodeKind::File);
    file.mode = 0o777;
    assert!(
        c.apply_metadata(
            link,
            &file,
            &ApplyOptions {
                ownership: true,
                xattrs: false
            }
        )
        .is_err()
    );
    let mut dir = Node::new(b"link_dir".to_vec(), NodeKind::Dir);
    dir.mode = 0o777;
    assert!(
        c.apply_metadata(
            Path::new("link_dir"),
            &dir,
            &ApplyOptions {
                ownership: false,
                xattrs: false
            }
        )
        .is_err()
    );
    assert_eq!(fs::metadata(&s.outside).unwrap().mode() & 0o777, 0o755);
    victim_intact(&s);
}

fn remove_tree_removes_links_not_what_they_point_to(walk: Walk) {
    let s = scene();
    let c = opened(&s.target, walk);
    symlink(&s.outside, s.target.join("dir/inner_link")).unwrap();
    fs::write(s.target.join("dir/f"), b"x").unwrap();
    assert_eq!(c.remove_tree(Path::new("dir")).unwrap(), 3);
    assert!(!s.target.join("dir").exists());
    assert_eq!(c.remove_tree(Path::new("link_dir")).unwrap(), 1);
    assert!(fs::symlink_metadata(s.target.join("link_dir")).is_err());
    victim_intact(&s);
}

#[test]
fn plain_relative_paths_only() {
    let s = scene();
    let c = Confined::open(&s.target).unwrap();
    for bad in [
        "../outside/victim",
        "/etc/passwd",
        "dir/../../outside/victim",
        "./dir/x",
    ] {
        let e = c
            .open_file(Path::new(bad), FileAccess::WriteCreate)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}: {e}");
    }
    victim_intact(&s);
}

fn files_dirs_links_and_metadata_inside_work(walk: Walk) {
    let s = scene();
    let c = opened(&s.target, walk);
    c.create_dir(Path::new("dir/sub")).unwrap();
    let mut f = c
        .open_file(Path::new("dir/sub/a"), FileAccess::WriteCreate)
        .unwrap();
    f.write_all(b"hello").unwrap();
    let mut node = Node::new(b"a".to_vec(), NodeKind::File);
    node.mode = 0o640;
    node.mtime_ns = 1_500_000_000_123;
    node.atime_ns = node.mtime_ns;
    apply_to_file(
        &f,
        Path::new("a"),
        &node,
        &ApplyOptions {
            ownership: false,
            xattrs: false,
        },
    )
    .unwrap();
    drop(f);
    c.hard_link(Path::new("dir/sub/a"), Path::new("dir/b"))
        .unwrap();
    c.symlink(b"sub/a", Path::new("dir/l")).unwrap();
    let md = fs::metadata(s.target.join("dir/b")).unwrap();
    assert_eq!((md.nlink(), md.mode() & 0o7777), (2, 0o640));
    assert_eq!(md.mtime_nsec(), 123);
    assert_eq!(
        fs::read_link(s.target.join("dir/l")).unwrap(),
        Path::new("sub/a")
    );
    let mut names = c.list(Path::new("dir")).unwrap();
    names.sort();
    assert_eq!(names, ["b", "l", "sub"]);
    assert!(!c.is_empty_dir(Path::new("dir/sub")).unwrap());
    let mut d = Node::new(b"sub".to_vec(), NodeKind::Dir);
    d.mode = 0o711;
    c.apply_metadata(
        Path::new("dir/sub"),
        &d,
        &ApplyOptions {
            ownership: false,
            xattrs: false,
        },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(s.target.join("dir/sub")).unwrap().mode() & 0o7777,
        0o711
    );
}

fn paths_past_path_max_resolve_in_pieces_without_following_links(walk: Walk) {
    let s = scene();
    let c = opened(&s.target, walk);
    let name = "d".repeat(200);
    let mut rel = PathBuf::new();
    for _ in 0..25 {
        rel.push(&name);
        c.create_dir(&rel).unwrap();
    }
    assert!(rel.as_os_str().len() > 4096);
    let file = rel.join("f");
    c.open_file(&file, FileAccess::WriteCreate).unwrap();
    assert_eq!(c.lstat(&file).unwrap().unwrap().kind, EntryKind::File);
    // A link deep down stops the walk as well.
    let mut deep_link = rel.clone();
    deep_link.push("l");
    c.symlink(s.outside.as_os_str().as_bytes(), &deep_link)
        .unwrap();
    assert!(
        c.open_file(&deep_link.join("victim"), FileAccess::ReadWrite)
            .is_err()
    );
    // The step-by-step walk of old kernels gives the same answers.
    c.openat2.store(false, Ordering::Relaxed);
    assert_eq!(c.lstat(&file).unwrap().unwrap().kind, EntryKind::File);
    let e = c
        .open_file(&deep_link.join("victim"), FileAccess::ReadWrite)
        .unwrap_err();
    assert!(
        e.to_string().contains("symbolic link stands in the way"),
        "{e}"
    );
    assert!(
        c.open_file(Path::new("link_dir/victim"), FileAccess::ReadWrite)
            .is_err()
    );
    assert_eq!(c.remove_tree(Path::new(&name)).unwrap(), 27);
    victim_intact(&s);
}

#[test]
fn messages_name_the_root_without_a_trailing_separator() {
    let s = scene();
    let c = Confined::open(&s.target).unwrap();
    assert_eq!(c.display(Path::new("")), s.target);
    assert_eq!(c.display(Path::new("a/b")), s.target.join("a/b"));
}

#[test]
fn nothing_is_reached_through_a_symlinked_directory_with_openat2() {
    nothing_is_reached_through_a_symlinked_directory(Walk::Openat2);
}

#[test]
fn nothing_is_reached_through_a_symlinked_directory_stepwise() {
    nothing_is_reached_through_a_symlinked_directory(Walk::Stepwise);
}

#[test]
fn a_symlink_as_last_component_is_neither_opened_nor_given_metadata_with_openat2() {
    a_symlink_as_last_component_is_neither_opened_nor_given_metadata(Walk::Openat2);
}

#[test]
fn a_symlink_as_last_component_is_neither_opened_nor_given_metadata_stepwise() {
    a_symlink_as_last_component_is_neither_opened_nor_given_metadata(Walk::Stepwise);
}

#[test]
fn remove_tree_removes_links_not_what_they_point_to_with_openat2() {
    remove_tree_removes_links_not_what_they_point_to(Walk::Openat2);
}

#[test]
fn remove_tree_removes_links_not_what_they_point_to_stepwise() {
    remove_tree_removes_links_not_what_they_point_to(Walk::Stepwise);
}

#[test]
fn files_dirs_links_and_metadata_inside_work_with_openat2() {
    files_dirs_links_and_metadata_inside_work(Walk::Openat2);
}

#[test]
fn files_dirs_links_and_metadata_inside_work_stepwise() {
    files_dirs_links_and_metadata_inside_work(Walk::Stepwise);
}

#[test]
fn paths_past_path_max_resolve_in_pieces_without_following_links_with_openat2() {
    paths_past_path_max_resolve_in_pieces_without_following_links(Walk::Openat2);
}

#[test]
fn paths_past_path_max_resolve_in_pieces_without_following_links_stepwise() {
    paths_past_path_max_resolve_in_pieces_without_following_links(Walk::Stepwise);
}

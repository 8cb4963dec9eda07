//! Restore confinement as a property: random snapshot trees restored over random target
//! trees that hold symlinks (to files and directories, inside and outside the target),
//! hard links to files outside, files where directories belong and the reverse, at every
//! depth, under every `--overwrite` mode with and without `--delete`.
//!
//! After each restore two things must hold: nothing outside the target changed (a
//! sentinel tree beside it is compared by content, mode, owner and mtime, and no entry
//! appeared beside the target), and the target is exactly what a small model of the
//! mode's promise says. `ARCA_CONFINEMENT_CASES` sets the number of cases (default 128).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_core::Repository;
use arca_core::backup::{BackupOptions, PathsSource, backup_paths_as};
use arca_core::progress::NoProgress;
use arca_core::repo::InitOptions;
use arca_core::restore::{Overwrite, RestoreOptions, find_path, restore};
use arca_storage::LocalStorage;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// mtimes (seconds) that tell apart where a file came from.
const SNAPSHOT_MTIME: i64 = 1_000_000_000;
const TARGET_MTIME: i64 = 1_500_000_000;
const OUTSIDE_MTIME: i64 = 1_200_000_000;
const SNAPSHOT_DIR_MODE: u32 = 0o750;
const TARGET_DIR_MODE: u32 = 0o705;

/// Where a symlink in the snapshot points (its text is restored as it is).
#[derive(Debug, Clone, Copy)]
enum SnapLink {
    Sibling,
    Parent,
    OutsideFile,
    OutsideDir,
}

#[derive(Debug, Clone)]
enum SnapEntry {
    File { seed: u8, len: usize, mode: u32 },
    Dir(BTreeMap<String, SnapEntry>),
    Link(SnapLink),
}

/// What a hostile or stale target holds.
#[derive(Debug, Clone)]
enum TargetEntry {
    File {
        seed: u8,
        len: usize,
        mode: u32,
    },
    Dir(BTreeMap<String, TargetEntry>),
    LinkToOutsideFile,
    LinkToOutsideDir,
    LinkInside,
    /// A hard link to the file outside.
    HardLinkOutside,
}

/// An entry as seen with `lstat`, never following a link.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    File {
        content: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    Dir {
        mode: u32,
        children: BTreeMap<String, Seen>,
    },
    Link(PathBuf),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_string()), Just("b".into()), Just("c".into())]
}

fn snap_tree() -> impl Strategy<Value = BTreeMap<String, SnapEntry>> {
    let leaf = prop_oneof![
        3 => (any::<u8>(), 0usize..3000, prop_oneof![Just(0o644u32), Just(0o755), Just(0o600), Just(0o444)])
            .prop_map(|(seed, len, mode)| SnapEntry::File { seed, len, mode }),
        1 => prop_oneof![
            Just(SnapLink::Sibling),
            Just(SnapLink::Parent),
            Just(SnapLink::OutsideFile),
            Just(SnapLink::OutsideDir)
        ]
        .prop_map(SnapEntry::Link),
    ];
    let entry = leaf.prop_recursive(3, 24, 3, |inner| {
        prop::collection::btree_map(name(), inner, 0..=3).prop_map(SnapEntry::Dir)
    });
    prop::collection::btree_map(name(), entry, 0..=3)
}

fn target_tree() -> impl Strategy<Value = BTreeMap<String, TargetEntry>> {
    let leaf = prop_oneof![
        3 => (any::<u8>(), 0usize..3000, prop_oneof![Just(0o640u32), Just(0o604)])
            .prop_map(|(seed, len, mode)| TargetEntry::File { seed, len, mode }),
        1 => Just(TargetEntry::LinkToOutsideFile),
        1 => Just(TargetEntry::LinkToOutsideDir),
        1 => Just(TargetEntry::LinkInside),
        1 => Just(TargetEntry::HardLinkOutside),
    ];
    let entry = leaf.prop_recursive(3, 24, 3, |inner| {
        prop::collection::btree_map(name(), inner, 0..=3).prop_map(TargetEntry::Dir)
    });
    prop::collection::btree_map(name(), entry, 0..=3)
}

fn content(seed: u8, len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(salt).wrapping_add((i % 251) as u8))
        .collect()
}

/// The place a case runs in: `src` (backed up), `outside` (the sentinel), `tgt`.
struct Place {
    root: PathBuf,
}

impl Place {
    fn src(&self) -> PathBuf {
        self.root.join("src")
    }
    fn tgt(&self) -> PathBuf {
        self.root.join("tgt")
    }
    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }
    fn victim(&self) -> PathBuf {
        self.outside().join("victim.txt")
    }
    fn victim_dir(&self) -> PathBuf {
        self.outside().join("vdir")
    }
}

fn set_mtime(p: &Path, secs: i64) -> std::io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    std::fs::File::options()
        .write(true)
        .open(p)?
        .set_times(std::fs::FileTimes::new().set_modified(t))
}

fn write_file(p: &Path, data: &[u8], mode: u32, mtime: i64) -> std::io::Result<()> {
    std::fs::write(p, data)?;
    set_mtime(p, mtime)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

fn build_snap(
    place: &Place,
    dir: &Path,
    tree: &BTreeMap<String, SnapEntry>,
) -> std::io::Result<()> {
    std::fs::create_dir(dir)?;
    for (n, e) in tree {
        let p = dir.join(n);
        match e {
            SnapEntry::File { seed, len, mode } => {
                write_file(&p, &content(*seed, *len, 0), *mode, SNAPSHOT_MTIME)?
            }
            SnapEntry::Dir(children) => build_snap(place, &p, children)?,
            SnapEntry::Link(to) => std::os::unix::fs::symlink(snap_link_text(place, *to), &p)?,
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(SNAPSHOT_DIR_MODE))
}

fn snap_link_text(place: &Place, to: SnapLink) -> PathBuf {
    match to {
        SnapLink::Sibling => "a".into(),
        SnapLink::Parent => "../a".into(),
        SnapLink::OutsideFile => place.victim(),
        SnapLink::OutsideDir => place.victim_dir(),
    }
}

fn build_target(
    place: &Place,
    dir: &Path,
    tree: &BTreeMap<String, TargetEntry>,
) -> std::io::Result<()> {
    std::fs::create_dir(dir)?;
    for (n, e) in tree {
        let p = dir.join(n);
        match e {
            TargetEntry::File { seed, len, mode } => {
                write_file(&p, &content(*seed, *len, 101), *mode, TARGET_MTIME)?
            }
            TargetEntry::Dir(children) => build_target(place, &p, children)?,
            TargetEntry::LinkToOutsideFile => std::os::unix::fs::symlink(place.victim(), &p)?,
            TargetEntry::LinkToOutsideDir => std::os::unix::fs::symlink(place.victim_dir(), &p)?,
            TargetEntry::LinkInside => std::os::unix::fs::symlink("a", &p)?,
            TargetEntry::HardLinkOutside => std::fs::hard_link(place.victim(), &p)?,
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(TARGET_DIR_MODE))
}

fn build_outside(place: &Place) -> std::io::Result<()> {
    std::fs::create_dir(place.outside())?;
    std::fs::create_dir(place.victim_dir())?;
    write_file(
        &place.victim_dir().join("inner.txt"),
        b"inner secret",
        0o600,
        OUTSIDE_MTIME,
    )?;
    std::fs::set_permissions(place.victim_dir(), std::fs::Permissions::from_mode(0o700))?;
    write_file(&place.victim(), b"victim secret", 0o600, OUTSIDE_MTIME)
}

/// Everything about a tree that a restore must not change outside its target.
fn fingerprint(p: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(p)?;
    let kind = md.file_type();
    let mut line = format!(
        "{} mode={:o} uid={} gid={}",
        p.display(),
        md.mode(),
        md.uid(),
        md.gid()
    );
    if kind.is_file() {
        line.push_str(&format!(
            " mtime={}.{} content={:?}",
            md.mtime(),
            md.mtime_nsec(),
            std::fs::read(p)?
        ));
    } else if kind.is_symlink() {
        line.push_str(&format!(" link={:?}", std::fs::read_link(p)?));
    }
    out.push(line);
    if kind.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for n in names {
            fingerprint(&p.join(n), out)?;
        }
    }
    Ok(())
}

fn observe(dir: &Path) -> std::io::Result<BTreeMap<String, Seen>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let md = std::fs::symlink_metadata(&p)?;
        let seen = if md.file_type().is_symlink() {
            Seen::Link(std::fs::read_link(&p)?)
        } else if md.is_dir() {
            Seen::Dir {
                mode: md.mode() & 0o7777,
                children: observe(&p)?,
            }
        } else {
            Seen::File {
                content: std::fs::read(&p)?,
                mode: md.mode() & 0o7777,
                mtime: md.mtime(),
            }
        };
        out.insert(e.file_name().to_string_lossy().into_owned(), seen);
    }
    Ok(out)
}

fn seen_snap(place: &Place, e: &SnapEntry) -> Seen {
    match e {
        SnapEntry::File { seed, len, mode } => Seen::File {
            content: content(*seed, *len, 0),
            mode: *mode,
            mtime: SNAPSHOT_MTIME,
        },
        SnapEntry::Dir(children) => Seen::Dir {
            mode: SNAPSHOT_DIR_MODE,
            children: children
                .iter()
                .map(|(n, c)| (n.clone(), seen_snap(place, c)))
                .collect(),
        },
        SnapEntry::Link(to) => Seen::Link(snap_link_text(place, *to)),
    }
}

fn seen_target(place: &Place, e: &TargetEntry) -> Seen {
    match e {
        TargetEntry::File { seed, len, mode } => Seen::File {
            content: content(*seed, *len, 101),
            mode: *mode,
            mtime: TARGET_MTIME,
        },
        TargetEntry::Dir(children) => Seen::Dir {
            mode: TARGET_DIR_MODE,
            children: children
                .iter()
                .map(|(n, c)| (n.clone(), seen_target(place, c)))
                .collect(),
        },
        TargetEntry::LinkToOutsideFile => Seen::Link(place.victim()),
        TargetEntry::LinkToOutsideDir => Seen::Link(place.victim_dir()),
        TargetEntry::LinkInside => Seen::Link("a".into()),
        TargetEntry::HardLinkOutside => Seen::File {
            content: b"victim secret".to_vec(),
            mode: 0o600,
            mtime: OUTSIDE_MTIME,
        },
    }
}

/// What one overwrite mode promises.
struct Model<'a> {
    place: &'a Place,
    overwrite: Overwrite,
    delete: bool,
    /// Entries the restore must report as errors (conflicts it leaves alone).
    conflicts: usize,
}

impl Model<'_> {
    fn dir(
        &mut self,
        snap: &BTreeMap<String, SnapEntry>,
        target: &BTreeMap<String, TargetEntry>,
    ) -> BTreeMap<String, Seen> {
        let mut out = BTreeMap::new();
        let names: std::collections::BTreeSet<&String> = snap.keys().chain(target.keys()).collect();
        for n in names {
            let seen = match (snap.get(n), target.get(n)) {
                (Some(s), None) => Some(seen_snap(self.place, s)),
                (None, Some(t)) => (!self.delete).then(|| seen_target(self.place, t)),
                (Some(s), Some(t)) => Some(self.both(s, t)),
                (None, None) => None,
            };
            if let Some(seen) = seen {
                out.insert(n.clone(), seen);
            }
        }
        out
    }

    fn both(&mut self, s: &SnapEntry, t: &TargetEntry) -> Seen {
        let never = self.overwrite == Overwrite::Never;
        match (s, t) {
            (SnapEntry::Dir(sc), TargetEntry::Dir(tc)) => Seen::Dir {
                mode: if never {
                    TARGET_DIR_MODE
                } else {
                    SNAPSHOT_DIR_MODE
                },
                children: self.dir(sc, tc),
            },
            (SnapEntry::Dir(_), _) if never => {
                self.conflicts += 1;
                seen_target(self.place, t)
            }
            (SnapEntry::Dir(_), _) => seen_snap(self.place, s),
            (_, _) if never => seen_target(self.place, t),
            (_, TargetEntry::Dir(tc)) if !tc.is_empty() && !self.delete => {
                self.conflicts += 1;
                seen_target(self.place, t)
            }
            _ => seen_snap(self.place, s),
        }
    }
}

struct Case {
    snap: BTreeMap<String, SnapEntry>,
    target: BTreeMap<String, TargetEntry>,
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn run_case(repo: &Arc<Repository>, work: &Path, case: &Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir_in(work).map_err(fail)?;
    let place = Place {
        root: dir.path().to_path_buf(),
    };
    build_outside(&place).map_err(fail)?;
    build_snap(&place, &place.src(), &case.snap).map_err(fail)?;
    let index = Arc::new(repo.load_index().map_err(fail)?);
    let kind = PathsSource {
        source: "test".into(),
        ..Default::default()
    };
    let src = place.src();
    let backup = backup_paths_as(
        repo,
        index,
        std::slice::from_ref(&src),
        &BackupOptions::default(),
        &kind,
        &NoProgress,
        |_| Ok(()),
    )
    .map_err(fail)?;
    let index = repo.load_index().map_err(fail)?;
    let node = find_path(repo, &index, &backup.snapshot.tree, &src).map_err(fail)?;
    let mut before = Vec::new();
    fingerprint(&place.outside(), &mut before).map_err(fail)?;
    for overwrite in [Overwrite::Always, Overwrite::IfChanged, Overwrite::Never] {
        for delete in [false, true] {
            let what = format!("--overwrite {overwrite:?} delete={delete}");
            build_target(&place, &place.tgt(), &case.target).map_err(fail)?;
            let opts = RestoreOptions {
                overwrite,
                delete,
                ..Default::default()
            };
            let summary = restore(repo, &index, &node, &src, &place.tgt(), &opts, &NoProgress)
                .map_err(|e| fail(format!("{what}: {e}")))?;
            let mut after = Vec::new();
            fingerprint(&place.outside(), &mut after).map_err(fail)?;
            prop_assert_eq!(&before, &after, "{}: the outside sentinel changed", what);
            let mut beside: Vec<_> = std::fs::read_dir(&place.root)
                .map_err(fail)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<_>>()
                .map_err(fail)?;
            beside.sort();
            prop_assert_eq!(
                beside,
                ["outside", "src", "tgt"],
                "{}: an entry appeared beside the target",
                what
            );
            let mut model = Model {
                place: &place,
                overwrite,
                delete,
                conflicts: 0,
            };
            let expected = model.dir(&case.snap, &case.target);
            let seen = observe(&place.tgt()).map_err(fail)?;
            prop_assert_eq!(
                &seen,
                &expected,
                "{}: the target is not what the mode promises",
                what
            );
            prop_assert_eq!(
                summary.errors.len(),
                model.conflicts,
                "{}: errors reported: {:?}",
                what,
                summary.errors
            );
            std::fs::remove_dir_all(place.tgt()).map_err(fail)?;
        }
    }
    Ok(())
}

#[test]
fn a_restore_never_leaves_its_target_and_keeps_each_modes_promise() {
    let work = tempfile::tempdir().unwrap();
    let storage = Arc::new(LocalStorage::new(work.path().join("repo")));
    let opts = InitOptions {
        kdf: Some(arca_core::crypto::test_kdf_params()),
        ..Default::default()
    };
    let repo = Arc::new(Repository::init(storage, b"pw", opts).unwrap());
    let cases = std::env::var("ARCA_CONFINEMENT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (snap_tree(), target_tree());
    runner
        .run(&strategy, |(snap, target)| {
            run_case(&repo, work.path(), &Case { snap, target })
        })
        .unwrap();
}

//! End-to-end: a backup killed with SIGKILL leaves a consistent repository, and the next
//! backup reuses what the killed one stored and indexed.

use std::ffi::OsStr;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const FILE_SIZE: usize = 4 * 1024 * 1024;
const FILES: usize = 12;

#[test]
fn killed_backup_then_check_and_reuse() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    for i in 0..FILES {
        write_random(
            &src.join(format!("file{i:02}.bin")),
            1000 + i as u64,
            FILE_SIZE,
        );
    }
    let total = (FILES * FILE_SIZE) as u64;

    // Start a backup; kill -9 it after at least a second, once two packs are
    // stored, so there is finished work that could be reused. (Two packs are 16-32 MiB of
    // the 48 MiB, with 8 or 16 MiB packs.)
    let mut c = env.cmd();
    c.args([OsStr::new("backup"), OsStr::new("--json"), src.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup finished ({status}) before it could be killed");
        }
        if start.elapsed() >= Duration::from_secs(1) && env.count_objects("data") >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no packs written after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let packs_after_kill = env.count_objects("data");
    let index_after_kill = env.count_objects("index");
    let killed_after = start.elapsed();
    assert_eq!(
        env.count_objects("snapshots"),
        0,
        "a killed backup wrote a snapshot"
    );

    // The repository is consistent (warnings about unindexed packs are fine).
    env.run(&["check"]).ok();

    // A new backup succeeds; it should reuse the blobs of the indexed packs.
    let sum = env.backup(&[&src], &[]);
    assert_eq!(u(&sum, "total_bytes"), total, "{sum}");
    assert_eq!(sum["incomplete"], false, "{sum}");
    let added = u(&sum, "bytes_added");
    assert!(
        added < total,
        "the backup after the kill stored everything again: bytes_added {added} >= total {total} \
         (the killed backup ran {killed_after:?} and left {packs_after_kill} packs but \
         {index_after_kill} index files, so none of its packs were reusable)"
    );

    env.run(&["check"]).ok();
    // Files from the adopted packs and from the new ones read back intact.
    for i in [0, FILES - 1] {
        let path = format!("{}/file{i:02}.bin", src.display());
        let out = env.run(&["dump", "latest", &path]).ok();
        assert!(
            out.stdout == random_bytes(1000 + i as u64, FILE_SIZE),
            "{path} dumped wrong"
        );
    }
}

//! End-to-end: ls, find, diff, dump, cat, stats, snapshots filters.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

struct Fixture {
    env: Env,
    src: std::path::PathBuf,
    first: String,
    second: String,
}

/// Two snapshots: the second adds new.txt, removes b.txt and modifies a.txt.
fn fixture() -> Fixture {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    fs::write(src.join("b.txt"), b"bravo").unwrap();
    fs::write(src.join("sub/c.txt"), b"charlie").unwrap();
    fs::write(src.join("sub/deeper/d.bin"), random_bytes(5, 300_000)).unwrap();
    fs::write(src.join("name1"), b"n1").unwrap();
    fs::write(src.join("sub/name2"), b"n2").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let first = s(&env.backup(&[&src], &["--tag", "one"]), "snapshot_id").to_string();
    fs::write(src.join("new.txt"), b"new").unwrap();
    fs::remove_file(src.join("b.txt")).unwrap();
    fs::write(src.join("a.txt"), b"alpha, modified").unwrap();
    let second = s(&env.backup(&[&src], &["--tag", "two"]), "snapshot_id").to_string();
    Fixture {
        env,
        src,
        first,
        second,
    }
}

fn p(f: &Fixture, rel: &str) -> String {
    format!("{}/{rel}", f.src.display())
}

#[test]
fn ls_find_diff() {
    let f = fixture();
    let env = &f.env;

    // ls --json: one JSON object per entry, with the snapshot paths.
    let out = env.run(&["ls", "latest", "--json"]).ok();
    let entries = out.json_lines();
    let paths: BTreeSet<String> = entries.iter().map(|e| s(e, "path").to_string()).collect();
    for rel in [
        "a.txt",
        "new.txt",
        "sub",
        "sub/c.txt",
        "sub/deeper/d.bin",
        "name1",
        "sub/name2",
        "link",
    ] {
        assert!(paths.contains(&p(&f, rel)), "ls lacks {rel}: {paths:?}");
    }
    assert!(!paths.contains(&p(&f, "b.txt")), "ls of latest lists b.txt");
    let d = entries
        .iter()
        .find(|e| e["path"] == p(&f, "sub/deeper/d.bin"))
        .unwrap();
    assert_eq!(u(d, "size"), 300_000);
    assert_eq!(d["type"], "file");
    let l = entries.iter().find(|e| e["path"] == p(&f, "link")).unwrap();
    assert_eq!(l["type"], "symlink");
    assert_eq!(l["link_target"], "a.txt");

    // ls of the first snapshot with a sub path.
    let sub = format!("{}:{}", f.first, p(&f, "sub"));
    let out = env.run(&["ls", &sub]).ok();
    let text = out.stdout_str();
    assert!(text.contains(&p(&f, "sub/c.txt")), "{text}");
    assert!(!text.contains(&p(&f, "a.txt")), "{text}");
    let out = env
        .run(&["ls", &f.first, &p(&f, "sub"), "--no-recursive"])
        .ok();
    assert!(!out.stdout_str().contains("d.bin"), "{}", out.stdout_str());

    // find by name glob, in all snapshots and in one.
    let out = env.run(&["find", "name*", "--json"]).ok();
    let hits = out.json();
    let found: BTreeSet<String> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| s(h, "path").to_string())
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([p(&f, "name1"), p(&f, "sub/name2")]),
        "{hits}"
    );
    assert_eq!(hits.as_array().unwrap().len(), 4, "2 names x 2 snapshots");
    let out = env.run(&["find", "b.txt", "-s", &f.first]).ok();
    assert!(out.stdout_str().contains(&p(&f, "b.txt")));
    let out = env.run(&["find", "b.txt", "-s", &f.second]).ok();
    assert!(!out.stdout_str().contains("b.txt"), "{}", out.stdout_str());
    // A pattern with `/` matches whole paths.
    let out = env.run(&["find", "--json", "**/sub/*.txt"]).ok();
    assert_eq!(
        out.json().as_array().unwrap().len(),
        2,
        "{}",
        out.stdout_str()
    );

    // diff: +, -, M lines.
    let out = env.run(&["diff", &f.first, &f.second]).ok();
    let text = out.stdout_str();
    let lines: BTreeSet<&str> = text.lines().map(str::trim_end).collect();
    for want in [
        format!("+  {}", p(&f, "new.txt")),
        format!("-  {}", p(&f, "b.txt")),
        format!("M  {}", p(&f, "a.txt")),
    ] {
        assert!(
            lines.contains(want.as_str()),
            "diff lacks {want:?}:\n{text}"
        );
    }
    assert!(
        !text.contains("c.txt"),
        "diff lists an unchanged file:\n{text}"
    );
    let out = env.run(&["diff", "--json", &f.first, &f.second]).ok();
    let v = out.json();
    assert_eq!(v["counts"]["added"], 1, "{v}");
    assert_eq!(v["counts"]["removed"], 1, "{v}");
    assert_eq!(v["counts"]["modified"], 1, "{v}");
}

#[test]
fn dump_cat_stats_snapshots() {
    let f = fixture();
    let env = &f.env;

    // dump of a file: its bytes.
    let out = env.run(&["dump", "latest", &p(&f, "a.txt")]).ok();
    assert_eq!(out.stdout, b"alpha, modified");
    let out = env.run(&["dump", &f.first, &p(&f, "b.txt")]).ok();
    assert_eq!(out.stdout, b"bravo");
    // --target writes a file.
    let t = env.path("dumped.bin");
    env.run(&[
        "dump",
        "latest",
        &p(&f, "sub/deeper/d.bin"),
        "--target",
        t.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(fs::read(&t).unwrap(), random_bytes(5, 300_000));

    // dump of a directory: a tar.
    let out = env.run(&["dump", "latest", &p(&f, "sub")]).ok();
    let mut tar = Command::new("tar")
        .arg("-tf")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let listed = tar.wait_with_output().unwrap();
    assert!(
        listed.status.success(),
        "tar -t failed: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let names = String::from_utf8_lossy(&listed.stdout).into_owned();
    for want in ["c.txt", "name2", "deeper/d.bin"] {
        assert!(
            names.lines().any(|l| l.ends_with(want)),
            "tar lacks {want}:\n{names}"
        );
    }
    // And extracts with the right content.
    let x = env.path("x");
    fs::create_dir(&x).unwrap();
    let mut tar = Command::new("tar")
        .arg("-xf")
        .arg("-")
        .current_dir(&x)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    assert!(tar.wait().unwrap().success());
    let c = list_files(&x)
        .into_iter()
        .find(|p| p.ends_with("c.txt"))
        .expect("c.txt extracted");
    assert_eq!(fs::read(c).unwrap(), b"charlie");

    // cat config: JSON with the format version.
    let out = env.run(&["cat", "config"]).ok();
    let cfg = out.json();
    assert_eq!(cfg["version"], 1, "{cfg}");
    assert!(cfg["chunker"]["min_size"].as_u64().is_some(), "{cfg}");
    let out = env.run(&["cat", "snapshot", &f.first]).ok();
    assert_eq!(out.json()["tags"], serde_json::json!(["one"]));
    env.run(&["cat", "masterkey"]).code(1);
    env.run(&["cat", "bogus"]).code(1);

    // stats.
    let out = env.run(&["stats", "--json"]).ok();
    let st = out.json();
    assert!(u(&st, "restore_size") > 0, "{st}");
    assert_eq!(u(&st, "snapshots"), 2, "{st}");
    let out = env.run(&["stats", "--json", "latest"]).ok();
    let latest = out.json();
    let expect = 15 + 3 + 7 + 300_000 + 2 + 2; // a, new, c, d.bin, name1, name2
    assert_eq!(u(&latest, "restore_size"), expect, "{latest}");

    // snapshots filters and references.
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    let out = env.run(&["snapshots", "--json", "--tag", "two"]).ok();
    let v = out.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], f.second);
    let out = env.run(&["snapshots", "--json", &f.first[..8]]).ok();
    assert_eq!(out.json()[0]["id"], f.first);
    env.run(&["ls", "0000000000"]).code(1);
}

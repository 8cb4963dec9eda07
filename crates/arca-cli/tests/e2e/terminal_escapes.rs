//! Regression tests of issue 15, item 4: what reaches a terminal is escaped. File names,
//! link targets, hosts, tags and error messages that quote them are printed by `ls`,
//! `find`, `diff`, `snapshots` and the error edge with control characters escaped (as
//! `ls -b` does); `--json` keeps the exact bytes (a string when UTF-8, else `{"hex": ...}`).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use crate::common::*;

/// The name of the finding: an OSC window title and a screen clear.
const HOSTILE: &[u8] = b"a\x1b]0;PWNED\x07\x1b[2Jb";
/// How text output shows it.
const HOSTILE_SHOWN: &str = "a\\x1b]0;PWNED\\a\\x1b[2Jb";
/// A name that is not UTF-8, with a newline and a C1 control (CSI, U+009B).
const BINARY: &[u8] = b"line\nbreak\xff\xc2\x9b[31m";
const BINARY_SHOWN: &str = "line\\nbreak\\xff\\xc2\\x9b[31m";

/// Asserts that `text` is UTF-8 and holds nothing a terminal acts on: no C0 control
/// other than the renderer's own newlines and tabs, no DEL, no C1 control.
#[track_caller]
fn assert_inert(what: &str, text: &[u8]) {
    let Ok(s) = std::str::from_utf8(text) else {
        panic!("{what} is not UTF-8: {:?}", String::from_utf8_lossy(text));
    };
    let bad = s
        .chars()
        .any(|c| (c < ' ' && c != '\n' && c != '\t') || ('\u{7f}'..='\u{9f}').contains(&c));
    assert!(!bad, "{what} holds control characters: {s:?}");
}

fn hostile_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("plain.txt"), b"plain").unwrap();
    src
}

#[test]
fn ls_and_find_escape_terminal_sequences_in_names() {
    let env = Env::init();
    let src = hostile_tree(&env);
    env.backup(&[&src], &[]);
    fs::write(src.join(OsStr::from_bytes(HOSTILE)), b"x").unwrap();
    fs::write(src.join(OsStr::from_bytes(BINARY)), b"y").unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(HOSTILE), src.join("link")).unwrap();
    env.backup(
        &[&src],
        &["--tag", "t\x1b[31mred", "--host", "h\x1b]0;X\x07"],
    );

    // ls, ls -l, find: escaped names, no raw control byte.
    let ls = env.run(&["ls", "latest"]).ok();
    assert_inert("ls", &ls.stdout);
    let text = ls.stdout_str();
    assert!(text.contains(HOSTILE_SHOWN), "{text}");
    assert!(text.contains(BINARY_SHOWN), "{text}");
    let long = env.run(&["ls", "-l", "latest"]).ok();
    assert_inert("ls -l", &long.stdout);
    assert!(
        long.stdout_str()
            .contains(&format!("link -> {HOSTILE_SHOWN}")),
        "{}",
        long.stdout_str()
    );
    let find = env.run(&["find", "*PWNED*"]).ok();
    assert_inert("find", &find.stdout);
    assert!(
        find.stdout_str().contains(HOSTILE_SHOWN),
        "{}",
        find.stdout_str()
    );

    // diff and snapshots (host and tag are repository strings too).
    let snaps = env.snapshots();
    let (first, second) = (s(&snaps[0], "id"), s(&snaps[1], "id"));
    let diff = env.run(&["diff", first, second]).ok();
    assert_inert("diff", &diff.stdout);
    assert!(
        diff.stdout_str()
            .contains(&format!("+  {}/{HOSTILE_SHOWN}", src.display()))
    );
    let listing = env.run(&["snapshots"]).ok();
    assert_inert("snapshots", &listing.stdout);
    assert!(
        listing.stdout_str().contains("t\\x1b[31mred"),
        "{}",
        listing.stdout_str()
    );
    assert!(
        listing.stdout_str().contains("h\\x1b]0;X\\a"),
        "{}",
        listing.stdout_str()
    );

    // An error message quoting a name: escaped at the binary's edge.
    let missing = format!("latest:{}/gone\x1b[2J", src.display());
    let err = env.run(&["ls", &missing]).fails();
    assert_inert("the error message", err.stderr.as_bytes());
    assert!(err.stderr.contains("gone\\x1b[2J"), "{}", err.stderr);

    // --json keeps the exact bytes: a JSON string when UTF-8, else {"hex": ...}.
    let entries = env.run(&["ls", "latest", "--json"]).ok().json_lines();
    let hostile = String::from_utf8(HOSTILE.to_vec()).unwrap();
    let by_name = |want: &serde_json::Value| entries.iter().find(|e| &e["name"] == want).cloned();
    let e = by_name(&serde_json::json!(hostile)).expect("the hostile name in ls --json");
    assert_eq!(
        e["path"],
        serde_json::json!(format!("{}/{hostile}", src.display()))
    );
    let binary_hex = serde_json::json!({ "hex": hex(BINARY) });
    let b = by_name(&binary_hex).expect("the binary name as hex in ls --json");
    let mut path = src.as_os_str().as_bytes().to_vec();
    path.push(b'/');
    path.extend_from_slice(BINARY);
    assert_eq!(b["path"], serde_json::json!({ "hex": hex(&path) }));
    let link = by_name(&serde_json::json!("link")).expect("the link in ls --json");
    assert_eq!(link["link_target"], serde_json::json!(hostile));
    let found = env.run(&["find", "*PWNED*", "--json"]).ok().json();
    assert_eq!(found[0]["name"], serde_json::json!(hostile), "{found}");
    let diff = env.run(&["diff", first, second, "--json"]).ok().json();
    let changes = diff["changes"].as_array().cloned().unwrap_or_default();
    assert!(
        changes.iter().any(|c| c["path"] == b["path"]),
        "diff --json lacks the binary name: {diff}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

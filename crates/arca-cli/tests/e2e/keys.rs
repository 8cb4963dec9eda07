//! End-to-end: key management (add, list, remove, passwd).

use std::fs;
use std::path::Path;

use crate::common::*;

fn with_pw(env: &Env, pw: &str, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.env("ARCA_PASSWORD", pw).args(args);
    run_cmd(c, None)
}

fn key_list(env: &Env, pw: &str) -> Vec<serde_json::Value> {
    with_pw(env, pw, &["key", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .expect("key list --json is an array")
        .clone()
}

fn current_key(keys: &[serde_json::Value]) -> String {
    let cur: Vec<_> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one current key expected: {keys:?}");
    s(cur[0], "id").to_string()
}

fn pwfile(env: &Env, name: &str, pw: &str) -> String {
    let p = env.path(name);
    fs::write(&p, format!("{pw}\n")).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn key_add_list_remove_passwd() {
    let env = Env::init();
    let src = env.path("src");
    small_tree(&src, 4, 1);
    env.backup(&[&src], &[]);
    let file = format!("{}/f001.txt", src.display());
    let original = fs::read(Path::new(&file)).unwrap();

    // Add a second key.
    let f2 = pwfile(&env, "pw2", "second password");
    env.run(&["key", "add", "--new-password-file", &f2]).ok();
    let keys = key_list(&env, PASSWORD);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let first_id = current_key(&keys);

    // The new password opens the repository and reads its data.
    let dumped = with_pw(&env, "second password", &["dump", "latest", &file]).ok();
    assert_eq!(dumped.stdout, original);
    let keys2 = key_list(&env, "second password");
    let second_id = current_key(&keys2);
    assert_ne!(first_id, second_id);

    // The key in use cannot be removed.
    with_pw(&env, PASSWORD, &["key", "remove", &first_id]).code(1);
    assert_eq!(key_list(&env, PASSWORD).len(), 2);
    with_pw(&env, PASSWORD, &["key", "remove", &first_id[..10]]).code(1);

    // The other one can (by prefix).
    with_pw(&env, "second password", &["key", "remove", &first_id[..12]]).ok();
    let keys = key_list(&env, "second password");
    assert_eq!(keys.len(), 1, "{keys:?}");
    with_pw(&env, PASSWORD, &["snapshots"]).code(12);

    // The last key cannot be removed.
    with_pw(&env, "second password", &["key", "remove", &second_id]).code(1);
    assert_eq!(key_list(&env, "second password").len(), 1);

    // passwd: the old password stops working, the new one works, data is intact.
    let f3 = pwfile(&env, "pw3", "third password");
    with_pw(
        &env,
        "second password",
        &["key", "passwd", "--new-password-file", &f3],
    )
    .ok();
    with_pw(&env, "second password", &["snapshots"]).code(12);
    let keys = key_list(&env, "third password");
    assert_eq!(keys.len(), 1, "passwd left {} keys: {keys:?}", keys.len());
    let dumped = with_pw(&env, "third password", &["dump", "latest", &file]).ok();
    assert_eq!(dumped.stdout, original);
    with_pw(&env, "third password", &["check", "--read-data"]).ok();
}

#[test]
fn key_remove_unknown_and_add_without_password_fail() {
    let env = Env::init();
    env.run(&["key", "remove", "ffffffffffff"])
        .code(1)
        .says("no key matches");
    // No --new-password-file and no terminal.
    env.run(&["key", "add"]).code(1);
    assert_eq!(key_list(&env, PASSWORD).len(), 1);
}

/// The terminal prompt refuses an empty password; the other sources should as well.
#[test]
fn empty_new_password_is_refused() {
    let env = Env::init();
    let empty = pwfile(&env, "empty", "");
    let add = env.run(&["key", "add", "--new-password-file", &empty]);
    let keys = key_list(&env, PASSWORD).len();
    let fresh = Env::new();
    let mut c = fresh.cmd();
    c.env("ARCA_PASSWORD", "").arg("init");
    let init = run_cmd(c, None);
    assert!(
        add.code != 0 && keys == 1 && init.code != 0,
        "empty passwords accepted: `key add --new-password-file <empty file>` exit {} ({keys} keys \
         now); `init` with ARCA_PASSWORD=\"\" exit {}",
        add.code,
        init.code
    );
}

#[test]
fn append_only_refuses_key_passwd_and_remove_but_allows_add() {
    let env = Env::init();
    let new = pwfile(&env, "new", "a new password");
    // Changing the password would leave the old key behind (it cannot be removed), so the
    // old password would go on working: refused before anything is written.
    let out = with_pw(
        &env,
        PASSWORD,
        &[
            "--append-only",
            "key",
            "passwd",
            "--new-password-file",
            &new,
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("append-only"), "{}", out.stderr);
    assert!(out.stderr.contains("key passwd"), "{}", out.stderr);
    assert_eq!(key_list(&env, PASSWORD).len(), 1, "no key written");
    with_pw(&env, "a new password", &["snapshots"]).code(12);
    // Adding a key only adds: allowed.
    with_pw(
        &env,
        PASSWORD,
        &["--append-only", "key", "add", "--new-password-file", &new],
    )
    .ok();
    let keys = key_list(&env, PASSWORD);
    assert_eq!(keys.len(), 2);
    let other = keys
        .iter()
        .find(|k| k["current"] != true)
        .map(|k| s(k, "id").to_string())
        .unwrap();
    let out = with_pw(&env, PASSWORD, &["--append-only", "key", "remove", &other]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("key remove"), "{}", out.stderr);
    assert_eq!(key_list(&env, PASSWORD).len(), 2);
}

//! Retention gives the same keep/forget decisions as restic on the same snapshot times.
//! Needs restic (scripts/test installs it); without it the test is skipped locally and
//! fails under CI=true.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ARCA: &str = env!("CARGO_BIN_EXE_arca");

fn have_restic() -> bool {
    let found = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "restic is missing (scripts/test installs it)"
        );
        eprintln!("skipping: restic not installed");
    }
    found
}

/// Irregular snapshot times over about two and a half years, some on the same day.
fn times() -> Vec<String> {
    let mut t = jiff::civil::date(2022, 3, 1).at(9, 30, 0, 0);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::new();
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let days = [0, 1, 1, 2, 3, 6, 9, 17, 31, 45][(x % 10) as usize];
        let hours = (x >> 8) % 7;
        t = t
            .checked_add(jiff::Span::new().days(days).hours(hours as i64))
            .unwrap();
        out.push(t.strftime("%Y-%m-%d %H:%M:%S").to_string());
    }
    out
}

fn restic(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", "pw")
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

fn arca(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(ARCA)
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("ARCA_PASSWORD", "pw")
        .env("ARCA_INSECURE_TEST_KDF", "1")
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

fn kept_restic(repo: &Path, policy: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend_from_slice(policy);
    let o = restic(repo, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap()[..19].replace('T', " "))
        .collect()
}

/// arca's decisions for restic's flags: restic's month unit `m` in a `--keep-within*`
/// value is arca's `mo` (arca's `m` is minutes, and refused there).
fn kept_arca(repo: &Path, policy: &[&str]) -> BTreeSet<String> {
    let mut args: Vec<String> = ["forget", "--dry-run", "--json"].map(String::from).to_vec();
    let mut within = false;
    for a in policy {
        args.push(if within {
            a.replace('m', "mo")
        } else {
            a.to_string()
        });
        within = a.starts_with("--keep-within");
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = arca(repo, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["groups"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["time"].as_str().unwrap()[..19].replace('T', " "))
        .collect()
}

#[test]
fn same_decisions_as_restic() {
    if !have_restic() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    let rrepo = dir.path().join("restic");
    let arepo = dir.path().join("arca");
    assert!(restic(&rrepo, &["init"]).status.success());
    assert!(arca(&arepo, &["init"]).status.success());
    let src_s = src.to_str().unwrap();
    for t in times() {
        let o = restic(
            &rrepo,
            &["backup", src_s, "--time", &t, "--host", "h", "-q"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = arca(
            &arepo,
            &["backup", src_s, "--time", &t, "--host", "h", "-q"],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let policies: &[&[&str]] = &[
        &[
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "7",
        ],
        &["--keep-last", "3", "--keep-monthly", "2"],
        &["--keep-weekly", "3", "--keep-yearly", "1"],
        &["--keep-hourly", "5"],
        // restic's months are `m`, arca's `mo` (kept_arca translates).
        &["--keep-within", "2m"],
        &["--keep-within", "1y", "--keep-last", "2"],
    ];
    let mut differ = Vec::new();
    for p in policies {
        let r = kept_restic(&rrepo, p);
        let a = kept_arca(&arepo, p);
        if r != a {
            differ.push(format!(
                "{p:?}: restic keeps {} (only restic: {:?}), arca keeps {} (only arca: {:?})",
                r.len(),
                r.difference(&a).collect::<Vec<_>>(),
                a.len(),
                a.difference(&r).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "retention differs from restic:\n{}",
        differ.join("\n")
    );
}

//! Unit tests of loading and checking configuration files.

use super::*;

const MINIMAL: &str = r#"[daemon]
listen = "127.0.0.1:9898"          # dashboard, API and /metrics
state = "/var/lib/arca/state.db"   # run history (SQLite)

[repositories.local]
location = "/srv/backup/repo"
password_file = "/etc/arca/pw"     # or password_command, password_env
media = "disk"
offsite = false

[jobs.docs]
sources = ["/home/me/docs"]
repositories = ["local"]
schedule = "*/5 * * * *"           # or "every 10m", or "auto" (from rpo)
rpo = "1h"
"#;

fn check(text: &str) -> Result<Config, Vec<Problem>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
    let text = text.replace("/etc/arca/pw", &dir.path().join("pw").display().to_string());
    let env = |k: &str| (k == "ARCA_TEST_PW").then(|| "x".to_string());
    match Config::parse(Path::new("/etc/arca/arca.toml"), &text, &env) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid { problems, .. }) => Err(problems),
        Err(e) => panic!("{e}"),
    }
}

fn problems(text: &str) -> Vec<(usize, usize, String)> {
    check(text)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{text}"))
        .into_iter()
        .map(|p| (p.line, p.column, p.reason))
        .collect()
}

fn has(ps: &[(usize, usize, String)], line: usize, needle: &str) {
    assert!(
        ps.iter().any(|(l, _, r)| *l == line && r.contains(needle)),
        "no problem {needle:?} at line {line} in {ps:#?}"
    );
}

#[test]
fn the_minimal_file_of_the_issue_works_as_written() {
    let c = check(MINIMAL).unwrap();
    assert_eq!(c.daemon.listen.unwrap().to_string(), "127.0.0.1:9898");
    assert_eq!(c.daemon.state, PathBuf::from("/var/lib/arca/state.db"));
    let j = c.job("docs").unwrap();
    assert_eq!(j.repositories, vec!["local"]);
    assert_eq!(j.rpo, Some(Duration::from_secs(3600)));
    assert!(matches!(j.source, Source::Paths { .. }));
    assert_eq!(c.repositories["local"].media, "disk");
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let text = MINIMAL.replace("rpo = \"1h\"", "rpo = \"1h\"\nschedul = \"x\"")
        + "\n[repositories.other]\nlocation = \"/x\"\npassword_env = \"ARCA_TEST_PW\"\ncolour = \"red\"\n"
        + "\n[extra]\nx = 1\n";
    let ps = problems(&text);
    has(&ps, 16, "unknown field `schedul`");
    has(&ps, 21, "unknown field `colour`");
    has(&ps, 23, "unknown key \"extra\"");
    assert_eq!(ps.len(), 3, "{ps:#?}");
}

#[test]
fn every_kind_of_mistake_at_once() {
    let text = r#"[repositories.local]
location = "/srv/repo"
media = "disk"

[repositories.cloud]
location = "s3:http://127.0.0.1:9000/bucket"
password_env = "ARCA_TEST_PW"

[jobs.a]
sources = ["/data"]
repositories = ["local", "nowhere"]
schedule = "61 * * * *"
window = "22:00"

[jobs.b]
sources = ["relative/path"]
repositories = ["cloud"]
schedule = "auto"
window = ["22:00-06:00", "07:00-"]
exclusions = [{ from = "2026-12-24 00:00" }]
timezone = "Mars/Olympus"

[jobs.c]
command = "echo hi"
repositories = ["cloud"]
schedule = "every 10q"
on_window_close = "explode"
rotation = { full = ["sundae"], default = "fancy" }
retention = { keep_daily = -5, keep_within = "3x" }
limits = { nice = 40, ionice = "sometimes" }
hooks = { timeout = "forever" }
"#;
    let ps = problems(text);
    has(&ps, 1, "no password source");
    has(&ps, 11, "repository \"nowhere\", which is not defined");
    has(&ps, 12, "invalid cron expression");
    has(&ps, 13, "has no end");
    has(&ps, 16, "not an absolute path");
    has(&ps, 18, "\"auto\" needs an rpo");
    has(&ps, 19, "\"07:00-\" has no end");
    has(&ps, 20, "has no end");
    has(&ps, 21, "unknown time zone");
    has(&ps, 26, "unknown unit");
    has(&ps, 27, "use \"finish\" or \"stop\"");
    has(&ps, 28, "invalid day \"sundae\"");
    has(&ps, 28, "invalid backup type");
    has(&ps, 29, "keep_daily");
    has(&ps, 29, "keep_within");
    has(&ps, 30, "nice");
    has(&ps, 30, "invalid ionice");
    has(&ps, 31, "hooks timeout");
    // Columns point at the value.
    let cron = ps.iter().find(|p| p.2.contains("invalid cron")).unwrap();
    assert_eq!(cron.1, 12);
}

#[test]
fn database_sources() {
    let base = "[repositories.r]\nlocation = \"/r\"\npassword_env = \"ARCA_TEST_PW\"\n";
    let ok = format!(
        "{base}[jobs.pg]\npostgres = {{ dbname = \"postgresql://u:secret@db/app\", format = \"directory\", jobs = 4 }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n\n[jobs.my]\nmysql = {{ databases = [\"shop\"], user = \"backup\", password_env = \"ARCA_TEST_PW\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n"
    );
    let c = check(&ok).unwrap();
    let pg = c.job("pg").unwrap();
    assert!(matches!(
        pg.source,
        Source::Postgres {
            format: PgFormat::Directory,
            jobs: 4,
            ..
        }
    ));
    assert_eq!(pg.source.describe(), "postgres: postgresql://u:***@db/app");
    assert!(
        !serde_json::to_string(&pg.source)
            .unwrap()
            .contains("secret")
    );
    assert_eq!(
        redact_dbname("host=x password=pw dbname=a"),
        "host=x password=*** dbname=a"
    );
    let bad = format!(
        "{base}[jobs.my]\nmysql = {{ user = \"backup\", password_env = \"NOPE\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n[jobs.pg]\npostgres = {{ dbname = \"app\", format = \"tar\" }}\nrepositories = [\"r\"]\nschedule = \"every 1h\"\n"
    );
    let ps = problems(&bad);
    has(&ps, 5, "either databases");
    has(&ps, 5, "NOPE is not set");
    has(&ps, 9, "use custom, plain or directory");
}

#[test]
fn invalid_toml_and_missing_password_file() {
    let ps = problems("[jobs.a\nsources = 1\n");
    assert_eq!(ps[0].0, 1);
    assert!(ps[0].2.contains("invalid TOML"));
    let text = MINIMAL.replace("/etc/arca/pw", "/nonexistent/pw");
    let dir_free = Config::parse(Path::new("x.toml"), &text, &|_| None);
    match dir_free {
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(
                problems[0].reason.contains("does not exist"),
                "{problems:?}"
            );
            assert_eq!(problems[0].line, 7);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_example_parses() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/arca.toml"
    ))
    .unwrap();
    // The example's password file and environment variable are placeholders.
    std::fs::write(dir.path().join("pw"), "x").unwrap();
    let text = text.replace("/etc/arca/pw", &dir.path().join("pw").display().to_string());
    let env = |_: &str| Some("x".to_string());
    let c = Config::parse(Path::new("/etc/arca/arca.toml"), &text, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.jobs.len() >= 3);
}

#[test]
fn session_idle_defaults_to_30_minutes_and_takes_a_duration() {
    assert_eq!(
        check(MINIMAL).unwrap().daemon.session_idle,
        Duration::from_secs(1800)
    );
    let short = MINIMAL.replace("[daemon]\n", "[daemon]\nsession_idle = \"2s\"\n");
    assert_eq!(
        check(&short).unwrap().daemon.session_idle,
        Duration::from_secs(2)
    );
    let zero = MINIMAL.replace("[daemon]\n", "[daemon]\nsession_idle = \"0s\"\n");
    has(&problems(&zero), 2, "session_idle");
    let bad = MINIMAL.replace("[daemon]\n", "[daemon]\nsession_idle = \"soon\"\n");
    has(&problems(&bad), 2, "session_idle");
}

//! Tablespaces of file-level base backups: the list a backup records (`pg.tablespaces`),
//! the `tablespace_map` file format, and where a restore puts each tablespace (its
//! original location, `--tablespace-map OID_OR_NAME=DIR`, or `--tablespace-map-all DIR`),
//! checked before anything is written.
//!
//! Layout (docs/FORMAT.md): a tablespace's content is stored in the snapshot under
//! `PGDATA/pg_tblspc/OID`, a directory in place of the data directory's symlink (as
//! pgBackRest stores it), so that successive backups find it in their parent at the same
//! path wherever the tablespace lives, and a restore can send it anywhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Snapshot metadata key: JSON array of [`Tablespace`].
pub const META_TABLESPACES: &str = "pg.tablespaces";

/// A tablespace other than `pg_default` and `pg_global`, as a base backup found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    pub oid: u32,
    pub name: String,
    /// `pg_tablespace_location`: an absolute path, or for an in-place tablespace
    /// (`allow_in_place_tablespaces`) a path relative to the data directory, whose content
    /// is part of the data directory's own tree.
    pub location: String,
}

impl Tablespace {
    /// Its content lives inside the data directory (`pg_tblspc/OID` is a directory).
    pub fn in_place(&self) -> bool {
        !Path::new(&self.location).is_absolute()
    }

    /// `NAME (OID N) at LOCATION`.
    pub fn describe(&self) -> String {
        format!("{} (OID {}) at {}", self.name, self.oid, self.location)
    }
}

/// The SQL expression listing the tablespaces as hex-encoded JSON text (one field, safe
/// from psql's field separator and line breaks in names or paths).
pub(crate) const LIST_SQL: &str = "(select encode(convert_to(coalesce(jsonb_agg(\
     jsonb_build_array(oid::text, spcname, pg_tablespace_location(oid)) order by oid)::text, \
     '[]'), 'UTF8'), 'hex') from pg_tablespace where spcname not in ('pg_default', 'pg_global'))";

/// Parses the field [`LIST_SQL`] returns (hex-encoded JSON).
pub(crate) fn parse_listed(hex: &str) -> Result<Vec<Tablespace>> {
    let json = super::filebackup::decode_hex_text(hex)
        .map_err(|_| Error::Invalid(format!("the server listed its tablespaces as {hex:?}")))?;
    parse_list(&json)
}

/// Parses the decoded result of [`LIST_SQL`].
pub(crate) fn parse_list(json: &str) -> Result<Vec<Tablespace>> {
    let bad = || Error::Invalid(format!("the server listed its tablespaces as {json:?}"));
    let rows: Vec<(String, String, String)> = serde_json::from_str(json).map_err(|_| bad())?;
    rows.into_iter()
        .map(|(oid, name, location)| {
            Ok(Tablespace {
                oid: oid.parse().map_err(|_| bad())?,
                name,
                location,
            })
        })
        .collect()
}

/// The tablespaces a snapshot records (none for snapshots written before tablespaces
/// were supported, which had none).
pub fn from_meta(meta: &std::collections::BTreeMap<String, String>) -> Result<Vec<Tablespace>> {
    match meta.get(META_TABLESPACES) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v).map_err(|e| {
            Error::Invalid(format!(
                "the snapshot's {META_TABLESPACES} is malformed: {e}"
            ))
        }),
    }
}

pub(crate) fn to_meta(list: &[Tablespace]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_string())
}

/// `OID PATH` lines of a `tablespace_map` file; in PATH, a backslash escapes a line
/// break or a backslash (as PostgreSQL writes and reads it).
pub(crate) fn parse_map(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    let mut push = |line: &mut String| {
        if let Some((oid, path)) = line.split_once(' ') {
            out.push((oid.to_string(), path.to_string()));
        }
        line.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('\n' | '\r' | '\\')) => {
                if let Some(n) = chars.next() {
                    line.push(n);
                }
            }
            '\n' | '\r' => push(&mut line),
            c => line.push(c),
        }
    }
    push(&mut line);
    out
}

/// A `tablespace_map` file for `entries` (OID, path).
pub(crate) fn format_map(entries: &[(u32, &Path)]) -> String {
    let mut s = String::new();
    for (oid, path) in entries {
        s.push_str(&oid.to_string());
        s.push(' ');
        for c in path.to_string_lossy().chars() {
            if matches!(c, '\n' | '\r' | '\\') {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('\n');
    }
    s
}

/// A `--tablespace-map` value that is not `OID_OR_NAME=DIR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?}: expected OID_OR_NAME=DIR (a tablespace's OID or name, then the directory to \
     restore it into)"
)]
pub struct MappingError(pub String);

/// Parses `OID_OR_NAME=DIR` (the value of `--tablespace-map`).
pub fn parse_mapping(arg: &str) -> std::result::Result<(String, PathBuf), MappingError> {
    match arg.split_once('=') {
        Some((key, dir)) if !key.is_empty() && !dir.is_empty() => {
            Ok((key.to_string(), PathBuf::from(dir)))
        }
        _ => Err(MappingError(arg.to_string())),
    }
}

/// Where a restore puts a tablespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub tablespace: Tablespace,
    /// An absolute path.
    pub target: PathBuf,
}

/// Where each tablespace of `list` goes: `mapped` (OID or name, directory) first, then
/// `all/NAME`, else the original location; in-place tablespaces stay in the data
/// directory and get no placement. Refuses unknown or repeated keys, targets inside the
/// data directory or each other, and a target that exists and is not an empty directory.
/// Reads only: nothing is created here.
pub(crate) fn place(
    list: &[Tablespace],
    mapped: &[(String, PathBuf)],
    all: Option<&Path>,
    pgdata: &Path,
    snapshot: &str,
) -> Result<Vec<Placement>> {
    let known = || {
        if list.is_empty() {
            "it has no tablespaces besides pg_default and pg_global".to_string()
        } else {
            let v: Vec<String> = list
                .iter()
                .map(|t| format!("{} (OID {})", t.name, t.oid))
                .collect();
            format!("it has {}", v.join(", "))
        }
    };
    let mut chosen: Vec<Option<PathBuf>> = vec![None; list.len()];
    for (key, dir) in mapped {
        let Some(i) = list
            .iter()
            .position(|t| t.name == *key || key.parse::<u32>().is_ok_and(|o| o == t.oid))
        else {
            return Err(Error::Invalid(format!(
                "--tablespace-map {key}={}: base backup {snapshot} has no tablespace with that \
                 OID or name ({})",
                dir.display(),
                known()
            )));
        };
        let t = &list[i];
        if t.in_place() {
            return Err(Error::Invalid(format!(
                "--tablespace-map {key}: tablespace {} is an in-place tablespace, restored \
                 inside the data directory; it cannot be mapped",
                t.describe()
            )));
        }
        if chosen[i].is_some() {
            return Err(Error::Invalid(format!(
                "--tablespace-map names tablespace {} (OID {}) more than once",
                t.name, t.oid
            )));
        }
        chosen[i] = Some(dir.clone());
    }
    let mut out: Vec<Placement> = Vec::new();
    for (t, dir) in list.iter().zip(chosen) {
        if t.in_place() {
            continue;
        }
        let dir = match (dir, all) {
            (Some(d), _) => d,
            (None, Some(all)) => {
                if t.name.is_empty() || t.name == "." || t.name == ".." || t.name.contains('/') {
                    return Err(Error::Invalid(format!(
                        "tablespace {} cannot go below --tablespace-map-all {}: its name is \
                         not a file name; map it with --tablespace-map {}=DIR",
                        t.describe(),
                        all.display(),
                        t.oid
                    )));
                }
                all.join(&t.name)
            }
            (None, None) => PathBuf::from(&t.location),
        };
        let target = std::path::absolute(&dir).map_err(|e| Error::io(&dir, e))?;
        let target = clean(&target);
        let pgdata = clean(&std::path::absolute(pgdata).map_err(|e| Error::io(pgdata, e))?);
        if target.starts_with(&pgdata) || pgdata.starts_with(&target) {
            return Err(Error::Invalid(format!(
                "tablespace {} would be restored into {}, which is the data directory {}, \
                 inside it or above it; give it a directory elsewhere with --tablespace-map \
                 {}=DIR",
                t.describe(),
                target.display(),
                pgdata.display(),
                t.name
            )));
        }
        if let Some(other) = out
            .iter()
            .find(|p| p.target.starts_with(&target) || target.starts_with(&p.target))
        {
            return Err(Error::Invalid(format!(
                "tablespaces {} and {} would be restored into {} and {}: each needs a \
                 directory of its own",
                other.tablespace.name,
                t.name,
                other.target.display(),
                target.display()
            )));
        }
        check_target(t, &target)?;
        out.push(Placement {
            tablespace: t.clone(),
            target,
        });
    }
    Ok(out)
}

/// A target must be absent or an empty directory.
fn check_target(t: &Tablespace, target: &Path) -> Result<()> {
    let hint = format!(
        "restore it elsewhere with --tablespace-map {}=DIR or --tablespace-map-all DIR",
        t.name
    );
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(target, e)),
        Ok(md) if !md.is_dir() => Err(Error::Invalid(format!(
            "tablespace {} (OID {}) would be restored into {}, which exists and is not a \
             directory; {hint}",
            t.name,
            t.oid,
            target.display()
        ))),
        Ok(_) => {
            let mut rd = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
            if rd.next().is_some() {
                return Err(Error::Invalid(format!(
                    "tablespace {} (OID {}) would be restored into {}, which exists and is \
                     not empty; {hint}",
                    t.name,
                    t.oid,
                    target.display()
                )));
            }
            Ok(())
        }
    }
}

/// `path` without `.` and `..` components (not resolving symlinks).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(oid: u32, name: &str, location: &str) -> Tablespace {
        Tablespace {
            oid,
            name: name.into(),
            location: location.into(),
        }
    }

    #[test]
    fn mapping_arguments_parse() {
        assert_eq!(
            parse_mapping("ts1=/srv/ts1").unwrap(),
            ("ts1".to_string(), PathBuf::from("/srv/ts1"))
        );
        assert_eq!(
            parse_mapping("16384=/a=b").unwrap(),
            ("16384".to_string(), PathBuf::from("/a=b"))
        );
        for bad in ["ts1", "=/x", "ts1=", ""] {
            assert!(parse_mapping(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_and_meta_round_trip() {
        let list =
            parse_list(r#"[["16384", "ts|1", "/srv/a b"], ["16390", "ip", "pg_tblspc/16390"]]"#)
                .unwrap();
        assert_eq!(list[0], ts(16384, "ts|1", "/srv/a b"));
        assert!(list[1].in_place() && !list[0].in_place());
        let mut meta = std::collections::BTreeMap::new();
        assert!(from_meta(&meta).unwrap().is_empty());
        meta.insert(META_TABLESPACES.to_string(), to_meta(&list));
        assert_eq!(from_meta(&meta).unwrap(), list);
        assert!(parse_list("[[\"x\", \"a\", \"/b\"]]").is_err());
        assert!(parse_list("").is_err());
        // As the server returns it: hex of the JSON text.
        let hex: String =
            r#"[["16384", "ts1", "/srv/a"]]"#.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_listed(&hex).unwrap()[0].name, "ts1");
        assert!(parse_listed("zz").is_err());
    }

    #[test]
    fn maps_round_trip_with_escapes() {
        let text = format_map(&[
            (16384, Path::new("/srv/ts")),
            (16385, Path::new("/odd\\dir\nname")),
        ]);
        assert_eq!(text, "16384 /srv/ts\n16385 /odd\\\\dir\\\nname\n");
        assert_eq!(
            parse_map(&text),
            vec![
                ("16384".to_string(), "/srv/ts".to_string()),
                ("16385".to_string(), "/odd\\dir\nname".to_string())
            ]
        );
        assert!(parse_map("").is_empty());
    }

    #[test]
    fn placement_follows_maps_and_refuses_what_it_must() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let pgdata = root.join("data");
        let list = vec![
            ts(16384, "ts1", &root.join("orig1").to_string_lossy()),
            ts(16385, "ts2", &root.join("orig2").to_string_lossy()),
            ts(16386, "ip", "pg_tblspc/16386"),
        ];
        // Default: the original locations (absent: fine); in-place ones need no placement.
        let p = place(&list, &[], None, &pgdata, "s").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].target, root.join("orig1"));
        // By name and by OID, the rest below --tablespace-map-all.
        let p = place(
            &list,
            &[("16384".into(), root.join("x/../new1"))],
            Some(&root.join("all")),
            &pgdata,
            "s",
        )
        .unwrap();
        assert_eq!(p[0].target, root.join("new1"));
        assert_eq!(p[1].target, root.join("all/ts2"));
        let p = place(
            &list,
            &[("ts2".into(), root.join("n2"))],
            None,
            &pgdata,
            "s",
        )
        .unwrap();
        assert_eq!(p[1].target, root.join("n2"));
        let err = |mapped: &[(String, PathBuf)], all: Option<&Path>| {
            place(&list, mapped, all, &pgdata, "s")
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("nope".into(), root.join("n"))], None).contains("no tablespace with"));
        assert!(err(&[("ip".into(), root.join("n"))], None).contains("in-place"));
        assert!(
            err(
                &[
                    ("ts1".into(), root.join("a")),
                    ("16384".into(), root.join("b"))
                ],
                None
            )
            .contains("more than once")
        );
        assert!(err(&[("ts1".into(), pgdata.join("t"))], None).contains("data directory"));
        assert!(
            err(
                &[
                    ("ts1".into(), root.join("s")),
                    ("ts2".into(), root.join("s/x"))
                ],
                None
            )
            .contains("each needs a directory")
        );
        // An existing empty directory is fine; a non-empty one or a file is refused.
        std::fs::create_dir(root.join("orig1")).unwrap();
        place(&list, &[], None, &pgdata, "s").unwrap();
        std::fs::write(root.join("orig1/f"), b"x").unwrap();
        let e = err(&[], None);
        assert!(
            e.contains("ts1 (OID 16384)") && e.contains("not empty"),
            "{e}"
        );
        std::fs::write(root.join("n"), b"x").unwrap();
        assert!(err(&[("ts1".into(), root.join("n"))], None).contains("not a directory"));
        // A snapshot without tablespaces has nothing to map.
        let e = place(&[], &[("ts1".into(), root.join("n"))], None, &pgdata, "s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no tablespaces"), "{e}");
    }
}

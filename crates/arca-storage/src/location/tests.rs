//! Unit tests of [`super`] (location).

use std::collections::HashMap;

use super::*;

fn s3(endpoint: Option<&str>, bucket: &str, prefix: &str) -> Location {
    Location::S3 {
        endpoint: endpoint.map(str::to_string),
        bucket: bucket.into(),
        prefix: prefix.into(),
    }
}

fn parse(s: &str) -> Location {
    parse_location(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse_err(s: &str) -> String {
    match parse_location(s) {
        Ok(l) => panic!("{s} parsed as {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn local_paths() {
    assert_eq!(parse("/srv/repo"), Location::Local("/srv/repo".into()));
    assert_eq!(parse("repo"), Location::Local("repo".into()));
    assert_eq!(parse("./a:b"), Location::Local("./a:b".into()));
    assert_eq!(parse("local:/x/y"), Location::Local("/x/y".into()));
    assert_eq!(
        parse("local:rel:colon"),
        Location::Local("rel:colon".into())
    );
    assert_eq!(parse("C:\\repo"), Location::Local("C:\\repo".into()));
    assert!(parse_err("local:").contains("needs a path"));
}

#[test]
fn s3_with_endpoint() {
    assert_eq!(
        parse("s3:http://127.0.0.1:9000/arca-test"),
        s3(Some("http://127.0.0.1:9000"), "arca-test", "")
    );
    assert_eq!(
        parse("s3:https://minio.example.com/bucket/a/b/"),
        s3(Some("https://minio.example.com"), "bucket", "a/b")
    );
    assert_eq!(
        parse("s3:http://[::1]:9000/b/p"),
        s3(Some("http://[::1]:9000"), "b", "p")
    );
    assert!(parse_err("s3:http://127.0.0.1:9000").contains("bucket name is missing"));
    assert!(parse_err("s3:http://127.0.0.1:9000/").contains("bucket name is missing"));
    assert!(parse_err("s3:http:///bucket").contains("no host"));
    assert!(parse_err("s3:http://h:port/b").contains("invalid port"));
    assert!(parse_err("s3:http://k:s@h/b").contains("AWS_ACCESS_KEY_ID"));
    assert!(parse_err("s3:ftp://h/b").contains("http:// or https://"));
    assert!(parse_err("s3:http://h/b/../x").contains("invalid prefix"));
}

#[test]
fn s3_aws_and_other_clouds() {
    assert_eq!(parse("s3:bucket"), s3(None, "bucket", ""));
    assert_eq!(parse("s3:my.bucket/x/y"), s3(None, "my.bucket", "x/y"));
    assert!(parse_err("s3:").contains("bucket name is missing"));
    assert_eq!(
        parse("oss:b/p"),
        Location::Oss {
            bucket: "b".into(),
            prefix: "p".into()
        }
    );
    assert_eq!(
        parse("azure:c"),
        Location::Azure {
            container: "c".into(),
            prefix: "".into()
        }
    );
    assert!(parse_err("azure:").contains("container name is missing"));
    assert_eq!(
        parse("gs:b/deep/er"),
        Location::Gcs {
            bucket: "b".into(),
            prefix: "deep/er".into()
        }
    );
}

#[test]
fn sftp_forms() {
    assert_eq!(
        parse("sftp:alice@host.example:/srv/repo/"),
        Location::Sftp {
            user: Some("alice".into()),
            host: "host.example".into(),
            port: None,
            path: "/srv/repo".into()
        }
    );
    assert_eq!(
        parse("sftp:host:/"),
        Location::Sftp {
            user: None,
            host: "host".into(),
            port: None,
            path: "/".into()
        }
    );
    assert_eq!(
        parse("sftp://bob@[::1]:2222/srv/r"),
        Location::Sftp {
            user: Some("bob".into()),
            host: "[::1]".into(),
            port: Some(2222),
            path: "/srv/r".into()
        }
    );
    assert_eq!(
        parse("sftp://h//srv/r"),
        Location::Sftp {
            user: None,
            host: "h".into(),
            port: None,
            path: "/srv/r".into()
        }
    );
    assert!(parse_err("sftp:host:relative").contains("must be absolute"));
    assert!(parse_err("sftp:hostonly").contains("sftp:[USER@]HOST:/PATH"));
    assert!(parse_err("sftp://h:99999/x").contains("invalid port"));
    assert!(parse_err("sftp:@:/x").contains("host is missing"));
}

#[test]
fn generic_opendal() {
    assert_eq!(
        parse("opendal:s3?bucket=b&endpoint=http%3A%2F%2Fh%3A1&root=/a+b"),
        Location::Opendal {
            scheme: "s3".into(),
            options: vec![
                ("bucket".into(), "b".into()),
                ("endpoint".into(), "http://h:1".into()),
                ("root".into(), "/a b".into()),
            ]
        }
    );
    assert_eq!(
        parse("opendal:memory"),
        Location::Opendal {
            scheme: "memory".into(),
            options: vec![]
        }
    );
    assert!(parse_err("opendal:?x=1").contains("opendal:SCHEME"));
    assert!(parse_err("opendal:s3?a=%zz").contains("percent"));
}

#[test]
fn unknown_scheme_lists_the_supported_ones() {
    let e = parse_err("ftp:host/x");
    assert!(e.contains("unknown storage scheme 'ftp:'"), "{e}");
    for s in [
        "s3:", "oss:", "azure:", "gs:", "sftp:", "opendal:", "local:",
    ] {
        assert!(e.contains(s), "{s} missing in {e}");
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn options_from_environment() {
    let o = OpenOptions::from_lookup(&env_of(&[])).unwrap();
    assert_eq!(o, OpenOptions::default());
    assert_eq!(o.retry.attempts, 6);
    let o = OpenOptions::from_lookup(&env_of(&[
        ("ARCA_RETRY_ATTEMPTS", "2"),
        ("ARCA_RETRY_BASE_MS", "5"),
        ("ARCA_STORAGE_CONNECTIONS", "16"),
    ]))
    .unwrap();
    assert_eq!(o.retry.attempts, 2);
    assert_eq!(o.retry.base, Duration::from_millis(5));
    assert_eq!(o.connections, Some(16));
    let e = OpenOptions::from_lookup(&env_of(&[("ARCA_RETRY_ATTEMPTS", "many")])).unwrap_err();
    assert!(e.to_string().contains("ARCA_RETRY_ATTEMPTS=many"), "{e}");
}

#[test]
fn aws_credentials_from_env_then_file() {
    let (c, source) = aws_credentials(&env_of(&[
        ("AWS_ACCESS_KEY_ID", "AK"),
        ("AWS_SECRET_ACCESS_KEY", "SK"),
        ("HOME", "/nonexistent"),
    ]));
    let c = c.unwrap();
    assert_eq!((c.key_id.as_str(), c.secret.as_str()), ("AK", "SK"));
    assert!(source.contains("environment"), "{source}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".aws")).unwrap();
    std::fs::write(
        dir.path().join(".aws/credentials"),
        "# comment\n[other]\naws_access_key_id = X\naws_secret_access_key = Y\n\n\
         [default]\naws_access_key_id = FILEKEY\naws_secret_access_key=FILESECRET\n\
         aws_session_token = TOK\n",
    )
    .unwrap();
    let home = dir.path().to_str().unwrap();
    let (c, source) = aws_credentials(&env_of(&[("HOME", home)]));
    let c = c.unwrap();
    assert_eq!(c.key_id, "FILEKEY");
    assert_eq!(c.secret, "FILESECRET");
    assert_eq!(c.token.as_deref(), Some("TOK"));
    assert!(
        source.contains(".aws/credentials, profile [default]"),
        "{source}"
    );
    let (c, _) = aws_credentials(&env_of(&[("HOME", home), ("AWS_PROFILE", "other")]));
    assert_eq!(c.unwrap().key_id, "X");
    let (c, source) = aws_credentials(&env_of(&[("HOME", home), ("AWS_PROFILE", "nope")]));
    assert!(c.is_none());
    assert!(source.contains("no profile [nope]"), "{source}");
    let (c, source) = aws_credentials(&env_of(&[("HOME", "/nonexistent")]));
    assert!(c.is_none());
    assert!(
        source.contains("no readable /nonexistent/.aws/credentials"),
        "{source}"
    );
}

#[test]
fn s3_checksum_choice() {
    let parsed = parse_location("s3:http://127.0.0.1:1/b").unwrap();
    for ok in ["md5", "CRC32C", "none"] {
        let pairs = [("ARCA_S3_CHECKSUM", ok)];
        let env = env_of(&pairs);
        open_parsed(
            "s3:http://127.0.0.1:1/b",
            &parsed,
            &OpenOptions::default(),
            &env,
        )
        .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let env = env_of(&[("ARCA_S3_CHECKSUM", "sha1")]);
    let opened = open_parsed("s3:x", &parsed, &OpenOptions::default(), &env);
    let Err(err) = opened else {
        panic!("sha1 is refused");
    };
    assert!(err.to_string().contains("ARCA_S3_CHECKSUM=sha1"), "{err}");
}

#[test]
fn builds_every_service_without_network() {
    let env = env_of(&[
        ("AWS_ACCESS_KEY_ID", "AK"),
        ("AWS_SECRET_ACCESS_KEY", "SK"),
        ("OSS_ENDPOINT", "https://oss-cn-hangzhou.aliyuncs.com"),
        ("AZURE_STORAGE_ACCOUNT", "acct"),
        ("AZURE_STORAGE_KEY", "a2V5"),
    ]);
    let opts = OpenOptions {
        connections: Some(3),
        ..OpenOptions::default()
    };
    for loc in [
        "s3:http://127.0.0.1:1/b/p",
        "s3:bucket",
        "oss:b/p",
        "azure:c/p",
        "gs:b/p",
        "sftp:u@h:/srv/r",
        "opendal:memory",
    ] {
        let parsed = parse_location(loc).unwrap();
        let s = open_parsed(loc, &parsed, &opts, &env).unwrap_or_else(|e| panic!("{loc}: {e}"));
        let p = s.properties();
        assert_eq!(p.location, loc);
        assert_eq!(p.connections, 3);
        assert!(!p.local);
    }
    let parsed = parse_location("/tmp/x").unwrap();
    assert!(
        open_parsed("/tmp/x", &parsed, &opts, &env)
            .unwrap()
            .properties()
            .local
    );
    let e = open_parsed(
        "oss:b",
        &parse_location("oss:b").unwrap(),
        &opts,
        &env_of(&[]),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("OSS_ENDPOINT"), "{e}");
    let e = open_parsed(
        "azure:c",
        &parse_location("azure:c").unwrap(),
        &opts,
        &env_of(&[]),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("AZURE_STORAGE_ACCOUNT"), "{e}");
    let e = open_parsed(
        "opendal:nosuch",
        &parse_location("opendal:nosuch").unwrap(),
        &opts,
        &env,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("nosuch"), "{e}");
}

#[test]
fn generic_memory_service_passes_the_suite() {
    let s = open_location_with("opendal:memory", &OpenOptions::default()).unwrap();
    crate::suite::run_all(&s);
}

//! Unit tests of [`super`] (notify).

use super::*;

fn alert() -> Alert {
    let mut details = BTreeMap::new();
    details.insert("error".into(), "source /x is gone".into());
    Alert {
        rule: "run_failed".into(),
        job: "docs".into(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        summary: "the last run of docs failed".into(),
        details,
        time: "2026-01-02T03:04:05Z".parse().unwrap(),
    }
}

#[test]
fn templates_have_their_shapes() {
    let a = alert();
    let g = webhook_body(&a, Template::Generic);
    assert_eq!(g["rule"], "run_failed");
    assert_eq!(g["state"], "firing");
    assert_eq!(g["details"]["error"], "source /x is gone");
    let s = webhook_body(&a, Template::Slack);
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING] critical run_failed docs")
    );
    assert_eq!(s["attachments"][0]["color"], "#d50200");
    let d = webhook_body(&a, Template::Dingtalk);
    assert_eq!(d["msgtype"], "markdown");
    assert!(
        d["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("- error: source /x is gone")
    );
    let f = webhook_body(&a, Template::Feishu);
    assert_eq!(f["msg_type"], "text");
    assert!(f["content"]["text"].as_str().unwrap().contains("docs"));
}

#[test]
fn channel_configs_refuse_unknown_keys() {
    let c: ChannelConfig = serde_json::from_str(
        r#"{"type":"webhook","url":"http://127.0.0.1:1/x","template":"slack","timeout":"5s"}"#,
    )
    .unwrap();
    match c {
        ChannelConfig::Webhook(w) => {
            assert_eq!(w.template, Template::Slack);
            assert_eq!(w.timeout, Duration::from_secs(5));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        serde_json::from_str::<ChannelConfig>(r#"{"type":"webhook","url":"x","bogus":1}"#).is_err()
    );
    assert!(serde_json::from_str::<ChannelConfig>(r#"{"type":"pager"}"#).is_err());
}

#[test]
fn channels_embed_in_toml() {
    #[derive(Debug, Deserialize)]
    struct File {
        channels: BTreeMap<String, ChannelConfig>,
    }
    let f: File = toml::from_str(
        r#"
        [channels.ops]
        type = "email"
        server = "smtp.example.com"
        from = "arca@example.com"
        to = ["ops@example.com"]
        password_env = "SMTP_PASSWORD"

        [channels.chat]
        type = "webhook"
        url = "https://oapi.dingtalk.com/robot/send?access_token=x"
        template = "dingtalk"
        secret_env = "DINGTALK_SECRET"

        [channels.pager]
        type = "command"
        command = "page-me"
        timeout = "30s"
        "#,
    )
    .unwrap();
    assert_eq!(f.channels.len(), 3);
    match &f.channels["ops"] {
        ChannelConfig::Email(e) => {
            assert_eq!(e.security, SmtpSecurity::Starttls);
            assert_eq!(e.timeout, Duration::from_secs(10));
        }
        other => panic!("{other:?}"),
    }
    let bad = toml::from_str::<File>(
        "[channels.x]\ntype = \"command\"\ncommand = \"x\"\ntimout = \"1s\"\n",
    );
    assert!(bad.unwrap_err().to_string().contains("timout"));
}

#[test]
fn dispatch_goes_on_after_a_failing_channel() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let channels = vec![
        (
            "broken".to_string(),
            ChannelConfig::Command(CommandConfig {
                command: "exit 1".into(),
                timeout: Duration::from_secs(5),
            }),
        ),
        (
            "log".to_string(),
            ChannelConfig::Command(CommandConfig {
                command: format!("cat >> '{}'; echo >> '{}'", log.display(), log.display()),
                timeout: Duration::from_secs(5),
            }),
        ),
    ];
    let mut resolved = alert();
    resolved.state = AlertState::Resolved;
    let d = dispatch(&channels, &[alert(), resolved]);
    assert_eq!(d.len(), 4);
    assert!(d[0].error.as_deref().unwrap().contains("code 1"));
    assert_eq!(d[1].error, None);
    assert_eq!(d[3].state, AlertState::Resolved);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn plain_smtp_only_to_loopback() {
    let e = EmailConfig {
        server: "mail.example.com".into(),
        port: Some(25),
        security: SmtpSecurity::Plain,
        username: None,
        password_env: None,
        password_file: None,
        from: "arca@example.com".into(),
        to: vec!["ops@example.com".into()],
        timeout: Duration::from_secs(1),
    };
    let r = send_email(&e, &alert());
    assert!(r.unwrap_err().to_string().contains("loopback"));
    assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
}

#[test]
fn signatures_match_the_robots_reference_code() {
    // Values from the vendors' Python examples with the same inputs.
    assert_eq!(
        dingtalk_sign("SEC123abc", 1_700_000_000_000),
        "Y7lFreIH8nbkx0oh17Qz99Pjjc7zigBXhyWvyDa2WA0%3D"
    );
    assert_eq!(
        feishu_sign("SEC123abc", 1_700_000_000),
        "fcqw5k6PKOgJo+1sXFj8Tr/joROvZjo8aV4g06ZlJx4="
    );
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    // RFC 4231 test case 2.
    assert_eq!(
        body_signature("Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn urls_are_redacted() {
    assert_eq!(
        redact_url("https://hooks.slack.com/services/T/B/secret"),
        "https://hooks.slack.com/..."
    );
    assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
}

#[test]
fn command_channel_gets_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let c = CommandConfig {
        command: format!("cat > '{}'", out.display()),
        timeout: Duration::from_secs(10),
    };
    send_command(&c, &alert()).unwrap();
    let got: Alert = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got, alert());
    let bad = CommandConfig {
        command: "exit 4".into(),
        timeout: Duration::from_secs(10),
    };
    assert!(
        send_command(&bad, &alert())
            .unwrap_err()
            .to_string()
            .contains("code 4")
    );
}

//! `arca alert test`: sends a test message through one alert channel (webhook, command or
//! email; a channel of the configuration file by name, or one given by flags), so a channel
//! can be tried before the daemon relies on it. The channels are
//! arca_daemon::notify.

use anyhow::{Result, anyhow};
use arca_core::units::Elapsed;
use arca_daemon::notify::{
    Alert, AlertState, ChannelConfig, CommandConfig, EmailConfig, SmtpSecurity, Template,
    WebhookConfig, send,
};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};

use crate::cli::GlobalArgs;
use crate::common;

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test message to a webhook, a command or an email address
    Test(AlertTestArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    Generic,
    Slack,
    Dingtalk,
    Feishu,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SmtpSecurityArg {
    Starttls,
    Tls,
    Plain,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("channel").required(true).args(["name", "webhook", "command", "smtp"])))]
pub struct AlertTestArgs {
    /// A channel of the configuration file ([channels.NAME]; needs --config or ARCA_CONFIG)
    #[arg(value_name = "CHANNEL")]
    pub name: Option<String>,
    /// POST the alert as JSON to this URL
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Body of the webhook
    #[arg(long, value_enum, default_value = "generic")]
    pub template: TemplateArg,
    /// Extra webhook header, e.g. "Authorization: Bearer X"; repeat for several
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Environment variable holding the webhook's signing secret (DingTalk and Feishu
    /// robots' signatures; X-Arca-Signature for the generic template)
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// Run this shell command with the alert as JSON on stdin
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Send an email through this SMTP server
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    /// How the SMTP connection is protected (plain only to a loopback server)
    #[arg(long, value_enum, default_value = "starttls")]
    pub smtp_security: SmtpSecurityArg,
    /// SMTP user name
    #[arg(long, value_name = "USER")]
    pub smtp_user: Option<String>,
    /// Environment variable holding the SMTP password
    #[arg(long, value_name = "VAR")]
    pub smtp_password_env: Option<String>,
    /// Sender address (default: arca@HOSTNAME)
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Recipient address; repeat for several
    #[arg(long, value_name = "ADDRESS")]
    pub to: Vec<String>,
    /// Time the channel may take
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: Elapsed,
    /// Also send the matching "resolved" message
    #[arg(long)]
    pub resolve: bool,
}

pub fn run(g: &GlobalArgs, c: AlertCommand) -> Result<i32> {
    match c {
        AlertCommand::Test(a) => test(g, a),
    }
}

fn channel(a: &AlertTestArgs) -> Result<ChannelConfig> {
    let timeout = a.timeout.0;
    if let Some(url) = &a.webhook {
        let mut headers = std::collections::BTreeMap::new();
        for h in &a.headers {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| anyhow!("--header {h:?}: expected \"NAME: VALUE\""))?;
            headers.insert(k.trim().to_string(), v.trim().to_string());
        }
        return Ok(ChannelConfig::Webhook(WebhookConfig {
            url: url.clone(),
            template: match a.template {
                TemplateArg::Generic => Template::Generic,
                TemplateArg::Slack => Template::Slack,
                TemplateArg::Dingtalk => Template::Dingtalk,
                TemplateArg::Feishu => Template::Feishu,
            },
            headers,
            timeout,
            secret: None,
            secret_env: a.secret_env.clone(),
        }));
    }
    if let Some(cmd) = &a.command {
        return Ok(ChannelConfig::Command(CommandConfig {
            command: cmd.clone(),
            timeout,
        }));
    }
    let Some(server) = &a.smtp else {
        return Err(anyhow!("give --webhook, --command or --smtp"));
    };
    if a.to.is_empty() {
        return Err(anyhow!("--smtp needs at least one --to ADDRESS"));
    }
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .map_err(|_| anyhow!("--smtp {server:?}: bad port {p:?}"))?,
            ),
        ),
        _ => (server.clone(), None),
    };
    Ok(ChannelConfig::Email(EmailConfig {
        server: host,
        port,
        security: match a.smtp_security {
            SmtpSecurityArg::Starttls => SmtpSecurity::Starttls,
            SmtpSecurityArg::Tls => SmtpSecurity::Tls,
            SmtpSecurityArg::Plain => SmtpSecurity::Plain,
        },
        username: a.smtp_user.clone(),
        password_env: a.smtp_password_env.clone(),
        password_file: None,
        from: a
            .from
            .clone()
            .unwrap_or_else(|| format!("arca@{}", arca_core::repo::hostname())),
        to: a.to.clone(),
        timeout,
    }))
}

fn configured_channel(g: &GlobalArgs, name: &str) -> Result<ChannelConfig> {
    let path = crate::cmd::daemon::config_path(g)?;
    let config = crate::cmd::daemon::load(&path)?;
    config.channels.get(name).cloned().ok_or_else(|| {
        anyhow!(
            "no channel {name:?} in {}; configured: {}",
            path.display(),
            if config.channels.is_empty() {
                "none".to_string()
            } else {
                config
                    .channels
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    })
}

fn test(g: &GlobalArgs, a: AlertTestArgs) -> Result<i32> {
    let channel = match &a.name {
        Some(name) => configured_channel(g, name)?,
        None => channel(&a)?,
    };
    let mut alerts = vec![Alert::test(jiff::Timestamp::now())];
    if a.resolve {
        let mut r = alerts[0].clone();
        r.state = AlertState::Resolved;
        r.summary = format!("resolved: {}", r.summary);
        alerts.push(r);
    }
    for alert in &alerts {
        send(&channel, alert)?;
        if g.json {
            common::print_json(&serde_json::json!({
                "message_type": "alert_sent",
                "channel": channel.describe(),
                "alert": alert,
            }))?;
        } else if !g.quiet {
            println!(
                "sent a test alert ({}) to {}",
                alert.state.as_str(),
                channel.describe()
            );
        }
    }
    Ok(crate::exit::OK)
}

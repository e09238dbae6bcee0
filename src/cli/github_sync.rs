//! `tokenkeeper github-sync [NAME] --repo OWNER/REPO [--env ENV] [--dry-run]`: a slot's token
//! as GitHub Actions secrets, sealed to the repository's key, for CI to run Claude Code with.

use std::process::{Command, Stdio};

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::Kind;
use crate::error::{Error, Result};
use crate::github::{self, Put, Target};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::secret::Secret;

/// The secret names, by what they hold (update_claude_secrets' mapping for an OAuth slot).
const SETUP_TOKEN: &str = "CLAUDE_CODE_OAUTH_TOKEN";
const ACCESS_TOKEN: &str = "CLAUDE_ACCESS_TOKEN";
const REFRESH_TOKEN: &str = "CLAUDE_REFRESH_TOKEN";
const EXPIRES_AT: &str = "CLAUDE_EXPIRES_AT";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
A long-lived slot (from `tokenkeeper setup`) becomes one secret, CLAUDE_CODE_OAUTH_TOKEN, which
Claude Code in CI reads as it is:
  - run: claude -p 'review this change'
    env:
      CLAUDE_CODE_OAUTH_TOKEN: ${{ secrets.CLAUDE_CODE_OAUTH_TOKEN }}

An OAuth slot becomes CLAUDE_ACCESS_TOKEN, CLAUDE_REFRESH_TOKEN and CLAUDE_EXPIRES_AT (Unix
milliseconds) — but only with --share-lineage: a refresh token is single-use, so CI refreshing
it and this machine refreshing it revoke each other. With --share-lineage the slot is handed
over: this machine stops refreshing it. A setup token for CI is the better way.

Values are sealed (libsodium sealed box) to the repository's or environment's public key and
sent in request bodies only. GitHub access: GH_TOKEN, else GITHUB_TOKEN, else `gh auth token`;
GITHUB_API_URL for GitHub Enterprise (e.g. https://github.example.com/api/v3).

Examples:
  tokenkeeper setup ci && tokenkeeper github-sync ci --repo octo/agent
  tokenkeeper github-sync ci --repo octo/agent --env production --dry-run
  tokenkeeper github-sync ci --repo octo/agent --name CLAUDE_CODE_OAUTH_TOKEN=CLAUDE_TOKEN")]
pub struct Args {
    /// Slot name or #N [default: the active slot].
    #[arg(add = super::slot_completer())]
    pub slot: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,

    /// The repository: OWNER/REPO.
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: String,

    /// Set the secrets on this deployment environment of the repository instead.
    #[arg(long = "env", value_name = "ENVIRONMENT")]
    pub environment: Option<String>,

    /// Show what would be set (and check access to the repository's key); set nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Sync an OAuth slot's refresh token too, handing the lineage over to CI: this machine
    /// stops refreshing the slot.
    #[arg(long)]
    pub share_lineage: bool,

    /// Another name for a secret: DEFAULT=NAME, e.g. CLAUDE_CODE_OAUTH_TOKEN=CLAUDE_TOKEN.
    #[arg(long = "name", value_name = "DEFAULT=NAME")]
    pub names: Vec<String>,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let target = Target::parse(&args.repo, args.environment.clone())?;
    let renames = parse_renames(&args.names)?;
    let fresh = super::usable_token(paths, agent, args.slot.as_deref())?;
    let (slot, credential) = (fresh.slot, fresh.credential);

    let mut values: Vec<(&'static str, Secret)> = Vec::new();
    match credential.kind() {
        Kind::LongLived => values.push((SETUP_TOKEN, credential.access_token())),
        Kind::Oauth if !args.share_lineage => {
            return Err(Error::failure(format!(
                "slot '{}' holds a refresh token, which is single-use: CI and this machine would each refresh it and revoke each other's tokens",
                slot.name
            ))
            .with_hint(format!(
                "give CI a long-lived token of its own: tokenkeeper setup ci && tokenkeeper github-sync ci --repo {} (or pass --share-lineage to hand this slot's lineage to CI for good)",
                args.repo
            )));
        }
        Kind::Oauth => {
            let keeper = Keeper::open(paths.clone())?;
            if keeper.owns_live(agent, &slot.id) {
                return Err(Error::failure(format!(
                    "slot '{}' is the one Claude Code uses here, which refreshes it too; handing its lineage to CI would leave two refreshers that revoke each other",
                    slot.name
                ))
                .with_hint("switch Claude Code to another slot first: tokenkeeper use OTHER"));
            }
            let refresh_token = credential.refresh_token().ok_or_else(|| {
                Error::failure(format!(
                    "slot '{}' has no refresh token to share",
                    slot.name
                ))
            })?;
            values.push((ACCESS_TOKEN, credential.access_token()));
            values.push((REFRESH_TOKEN, refresh_token));
            let expires = credential
                .expires_at()
                .map(|at| at.as_millisecond().to_string())
                .unwrap_or_default();
            values.push((EXPIRES_AT, Secret::new(expires)));
        }
    }
    for (default, _) in &renames {
        if !values.iter().any(|(name, _)| name == default) {
            return Err(Error::usage(format!(
                "--name {default}=…: slot '{}' has no secret {default} (it syncs {})",
                slot.name,
                values
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let named = |default: &str| -> String {
        renames
            .iter()
            .find(|(from, _)| from == default)
            .map_or_else(|| default.to_string(), |(_, to)| to.clone())
    };

    let client = github::Client::new(github_token(args.dry_run)?);
    let key = client.public_key(&target)?;
    let mut done = Vec::new();
    for (default, value) in &values {
        let name = named(default);
        let action = if args.dry_run {
            "would-set"
        } else {
            match client.put(&target, &key, &name, value)? {
                Put::Created => "created",
                Put::Updated => "updated",
            }
        };
        done.push((name, action));
    }
    let handed_over = credential.kind() == Kind::Oauth && !args.dry_run;
    if handed_over {
        Keeper::open(paths.clone())?.mark_handed_over(&slot.id)?;
    }

    if format == Format::Json {
        return output::json(&json!({
            "slot": slot.name,
            "repo": format!("{}/{}", target.owner, target.repo),
            "environment": target.environment,
            "dry_run": args.dry_run,
            "handed_over": handed_over,
            "secrets": done.iter().map(|(name, action)| json!({"name": name, "action": action})).collect::<Vec<_>>(),
        }))
        .map(|()| 0);
    }
    for (name, action) in &done {
        let verb = match *action {
            "would-set" => "would set",
            other => other,
        };
        output::line(&format!("{verb} secret {name} on {}", target.describe()))?;
    }
    if handed_over {
        output::line(&format!(
            "slot '{}' is handed over to CI: it is no longer refreshed here",
            slot.name
        ))?;
    }
    Ok(0)
}

/// `DEFAULT=NAME` pairs, each name checked as GitHub checks it.
fn parse_renames(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (from, to) = pair.split_once('=').ok_or_else(|| {
                Error::usage(format!("--name {pair}: expected DEFAULT=NAME"))
                    .with_hint("e.g. --name CLAUDE_CODE_OAUTH_TOKEN=CLAUDE_TOKEN")
            })?;
            if ![SETUP_TOKEN, ACCESS_TOKEN, REFRESH_TOKEN, EXPIRES_AT].contains(&from) {
                return Err(Error::usage(format!(
                    "--name {pair}: {from} is none of {SETUP_TOKEN}, {ACCESS_TOKEN}, {REFRESH_TOKEN}, {EXPIRES_AT}"
                )));
            }
            github::validate_name(to)?;
            Ok((from.to_string(), to.to_string()))
        })
        .collect()
}

/// GitHub access: GH_TOKEN, GITHUB_TOKEN, or what `gh auth token` prints (its stdout only).
fn github_token(dry_run: bool) -> Result<Secret> {
    for name in ["GH_TOKEN", "GITHUB_TOKEN"] {
        if let Ok(value) = std::env::var(name)
            && !value.trim().is_empty()
        {
            return Ok(Secret::new(value.trim().to_string()));
        }
    }
    let mut gh = Command::new("gh");
    gh.args(["auth", "token"]);
    if let Some(host) = enterprise_host() {
        gh.args(["--hostname", &host]);
    }
    let output = gh
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let no_token = || {
        Error::failure(format!(
            "no GitHub token{}: GH_TOKEN and GITHUB_TOKEN are not set, and `gh auth token` gave none",
            if dry_run { " (a dry run still reads the repository's key)" } else { "" }
        ))
        .with_hint("log in with `gh auth login`, or set GH_TOKEN")
    };
    match output {
        Ok(output) if output.status.success() => {
            let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if token.is_empty() || token.contains(char::is_whitespace) {
                Err(no_token())
            } else {
                Ok(Secret::new(token))
            }
        }
        _ => Err(no_token()),
    }
}

/// The host of a GitHub Enterprise API URL, for `gh auth token --hostname`.
fn enterprise_host() -> Option<String> {
    let url = std::env::var(github::ENV_API_URL).ok()?;
    let host = url
        .split("://")
        .nth(1)?
        .split(['/', ':'])
        .next()?
        .to_string();
    (host != "api.github.com" && !host.is_empty()).then_some(host)
}

//! The ralph token commands: `store-token`, `check-token`, `get-token` — messages, stdin
//! formats and exit codes as the ralph token-management spec gives them.

use jiff::Timestamp;
use serde_json::json;

use super::output::{self, Format};
use crate::agent::credential::InputForm;
use crate::error::{Error, Result};
use crate::input;
use crate::paths::Paths;
use crate::ralph::{self, Status, TokenStore};
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Agent whose token to use; each agent's token is stored separately.
    #[arg(long, default_value = "claude", value_name = "NAME")]
    pub agent: String,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads a bare token (stored with an expiry 365 days from now) or JSON with an `accessToken`
field (kept as is; `expiresAt`, Unix milliseconds, is added when missing):
  claude setup-token | tokenkeeper store-token
  tokenkeeper store-token --agent codex < token.json")]
pub struct StoreArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
}

pub fn store(args: StoreArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = &args.agent.agent;
    ralph::validate_agent(agent)?;
    let input = input::read_stdin_secret("claude setup-token | tokenkeeper store-token")?;
    let (expires_at, form) = TokenStore::open(paths)?.store(agent, &input, Timestamp::now())?;
    if format == Format::Json {
        let form = match form {
            InputForm::Json => "json",
            InputForm::BareToken => "bare-token",
        };
        return output::json(
            &json!({ "agent": agent, "stored": true, "input": form, "expires_at": expires_at }),
        )
        .map(|()| 0);
    }
    output::line(&format!(
        "tokenkeeper: token stored for agent {agent} (expires {})",
        timefmt::date(expires_at)
    ))
    .map(|()| 0)
}

pub fn check(args: AgentArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = &args.agent;
    ralph::validate_agent(agent)?;
    let now = Timestamp::now();
    let status = TokenStore::open(paths)?.status(agent, now)?;
    if format == Format::Json {
        let (name, at) = match &status {
            Status::Valid { expires_at } => ("valid", Some(*expires_at)),
            Status::Expired { expired_at } => ("expired", Some(*expired_at)),
            Status::Missing => ("missing", None),
        };
        output::json(&json!({
            "agent": agent,
            "status": name,
            "expires_at": at,
            "days_remaining": at.map(|at| timefmt::days_remaining(at, now)),
        }))?;
        return Ok(if name == "valid" { 0 } else { 1 });
    }
    match status {
        Status::Valid { expires_at } => {
            let days = timefmt::days_remaining(expires_at, now);
            output::line(&format!(
                "tokenkeeper: token valid for agent {agent} (expires {}, {days} days remaining)",
                timefmt::date(expires_at)
            ))?;
            Ok(0)
        }
        Status::Expired { expired_at } => {
            output::notice(&expired_message(agent, expired_at));
            Ok(1)
        }
        Status::Missing => {
            output::notice(&missing_message(agent));
            Ok(1)
        }
    }
}

pub fn get(args: AgentArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = &args.agent;
    ralph::validate_agent(agent)?;
    let now = Timestamp::now();
    let mut store = TokenStore::open(paths)?;
    let credential = store
        .load(agent)?
        .ok_or_else(|| Error::failure(missing_message(agent)))?;
    if let Some(at) = credential.expires_at().filter(|at| *at <= now) {
        return Err(Error::failure(expired_message(agent, at)));
    }
    let token = credential.access_token();
    if format == Format::Json {
        return output::json(&json!({ "agent": agent, "access_token": token.expose_secret(), "expires_at": credential.expires_at() })).map(|()| 0);
    }
    output::line(token.expose_secret()).map(|()| 0)
}

fn expired_message(agent: &str, at: Timestamp) -> String {
    format!(
        "token expired for agent {agent} (expired {})",
        timefmt::date(at)
    )
}

fn missing_message(agent: &str) -> String {
    format!(
        "no token found for agent {agent} — run: {}",
        ralph::missing_hint(agent)
    )
}

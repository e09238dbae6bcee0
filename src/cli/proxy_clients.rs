//! `tokenkeeper proxy-clients`: the named clients of a proxy started with `--clients FILE`.
//!
//! The file holds each client's name and the SHA-256 of its token; the token itself is printed
//! once, when it is made, and kept nowhere else.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::output::{self, Format};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::proxy::clients;
use crate::secret::Secret;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tokenkeeper proxy-clients add laptop      make laptop's token (printed once) and list it
  tokenkeeper proxy-clients remove ci-7     ci-7's token stops working at the next SIGHUP
  tokenkeeper proxy-clients list
  tokenkeeper proxy --slot work --clients ~/.config/tokenkeeper/proxy-clients ...
  kill -HUP $(pidof tokenkeeper)            the running proxy re-reads the file

Each client sends its token as the bearer token or x-api-key (e.g. CLAUDE_CODE_OAUTH_TOKEN or
ANTHROPIC_API_KEY), and the proxy's access log names the client.")]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,

    /// The clients file [default: proxy-clients in tokenkeeper's config directory].
    #[arg(
        long,
        global = true,
        env = "TOKENKEEPER_PROXY_CLIENTS",
        value_name = "FILE"
    )]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Make a token for a new client, list its hash, print the token (once).
    Add {
        /// The client's name, as the access log will show it.
        name: String,
    },
    /// Stop admitting a client (the running proxy takes it up on SIGHUP).
    #[command(alias = "rm")]
    Remove { name: String },
    /// The clients the file names.
    #[command(alias = "ls")]
    List,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let file = args
        .file
        .unwrap_or_else(|| paths.config_dir.join("proxy-clients"));
    match args.action {
        Action::Add { name } => add(&file, &name, paths, format),
        Action::Remove { name } => remove(&file, &name, format),
        Action::List => list(&file, format),
    }
}

fn add(file: &Path, name: &str, paths: &Paths, format: Format) -> Result<u8> {
    if !clients::valid_name(name) {
        return Err(Error::usage(format!(
            "'{name}' is not a client name: letters, digits and . _ - @, at most 64"
        )));
    }
    let text = existing(file)?;
    let entries = parse(file, &text)?;
    if entries.iter().any(|entry| &*entry.name == name) {
        return Err(
            Error::usage(format!("{} already has a client '{name}'", file.display()))
                .with_hint("remove it first to give it a new token"),
        );
    }
    let token = Secret::random("tkc-")?;
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "{name} {}\n",
        clients::hash_line_value(token.expose_secret())
    ));
    if file.parent() == Some(paths.config_dir.as_path()) {
        crate::perms::ensure_private_dir(&paths.config_dir)?;
    }
    crate::durable::write_atomic(file, text.as_bytes())?;
    if format == Format::Json {
        output::json(&json!({"name": name, "token": token, "file": file}))?;
    } else {
        output::line(token.expose_secret())?;
    }
    output::notice(&format!(
        "client '{name}' added to {}; its token is shown this once. A running proxy takes it up on SIGHUP.",
        file.display()
    ));
    Ok(0)
}

fn remove(file: &Path, name: &str, format: Format) -> Result<u8> {
    let text = existing(file)?;
    parse(file, &text)?;
    let named = |line: &str| {
        let line = line.split('#').next().unwrap_or_default();
        line.split_whitespace().next() == Some(name)
    };
    if !text.lines().any(named) {
        return Err(Error::failure(format!(
            "{} has no client '{name}'",
            file.display()
        )));
    }
    let kept: String = text
        .lines()
        .filter(|line| !named(line))
        .flat_map(|line| [line, "\n"])
        .collect();
    crate::durable::write_atomic(file, kept.as_bytes())?;
    if format == Format::Json {
        output::json(&json!({"removed": name, "file": file}))?;
    } else {
        output::line(&format!(
            "removed client '{name}'; a running proxy refuses its token after SIGHUP"
        ))?;
    }
    Ok(0)
}

fn list(file: &Path, format: Format) -> Result<u8> {
    let entries = parse(file, &existing(file)?)?;
    if format == Format::Json {
        let names: Vec<&str> = entries.iter().map(|entry| &*entry.name).collect();
        return output::json(&json!({"file": file, "clients": names})).map(|()| 0);
    }
    for entry in &entries {
        output::line(&entry.name)?;
    }
    Ok(0)
}

/// The file's text; empty when it does not exist yet.
fn existing(file: &Path) -> Result<String> {
    crate::perms::check_private(file, false)?;
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(Error::io("cannot read the clients file", file, err)),
    }
}

fn parse(file: &Path, text: &str) -> Result<Vec<clients::Entry>> {
    clients::parse(text).map_err(|(line, why)| {
        Error::failure(format!("{}:{line}: {why}", file.display()))
            .with_hint("fix or remove that line, then try again")
    })
}

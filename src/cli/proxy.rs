//! `tokenkeeper proxy`: the credential-injecting reverse proxy as a long-running server.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde_json::json;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

use super::AgentArg;
use super::output::Format;
use crate::error::{Error, Result};
use crate::input;
use crate::paths::Paths;
use crate::proxy::{
    self, Auth, Clients, ListenerTls, NamedClients, Proxy, Settings, SlotPool, SlotTokens, Target,
    TokenSource, UpstreamOptions,
};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// `Authorization: Bearer <token>` (OAuth and setup tokens).
    Bearer,
    /// `x-api-key: <token>` (Console API keys).
    ApiKey,
    /// The header named by --auth-header (an LLM gateway's own).
    Gateway,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The real token comes from one line on stdin (then stdin is closed), or from a slot with --slot,
which keeps it refreshed: on an upstream 401 the proxy refreshes once (one refresh per lineage,
shared with every other tokenkeeper process) and resends the request.
With --pool, several slots of your own accounts serve one agent: a conversation stays on its
slot (for the prompt cache), a 429 that says the account's limit is reached (not a per-minute
burst, which the client gets as it came) sends the request again on another slot, and the
limited slot is left alone until its reset. When every slot is limited, the client gets the
provider's 429 of the slot back soonest. Sharing a subscription between people breaks the
provider's terms; a pool is for one person's accounts.
Clients present the --client-token (or their own token, with --clients) as a bearer token or
x-api-key; whatever credentials they send are removed before the real one is set. GET /health
and GET /metrics (Prometheus) are the proxy's own. One log line per request goes to stderr;
tokens never do. Beyond loopback the proxy wants TLS (--tls-cert, --tls-key), or
--insecure-listen for plain HTTP on a network of your own.
SIGHUP re-reads the clients file and the certificate. SIGTERM or SIGINT stops accepting, lets
open streams finish (up to --grace), then exits 0.

Examples:
  echo \"$TOKEN\" | tokenkeeper proxy                       like the agent-loop proxy, on 127.0.0.1:18080
  tokenkeeper proxy-clients add laptop                   a token for one machine, printed once
  tokenkeeper proxy --slot work --listen 0.0.0.0:8443 --clients ~/.config/tokenkeeper/proxy-clients \\
      --tls-cert proxy.pem --tls-key proxy-key.pem
  TOKENKEEPER_CLIENT_TOKEN=phantom tokenkeeper proxy --slot work --listen 0.0.0.0:18080
  TOKENKEEPER_CLIENT_TOKEN=phantom tokenkeeper proxy --pool all --strategy next
  ANTHROPIC_BASE_URL=http://127.0.0.1:18080 CLAUDE_CODE_OAUTH_TOKEN=phantom claude")]
pub struct Args {
    /// Where to listen: ADDR:PORT, or ADDR with the port from LISTEN_PORT.
    #[arg(long, env = "TOKENKEEPER_LISTEN", value_name = "ADDR[:PORT]")]
    pub listen: Option<String>,

    /// Port to listen on when --listen gives none.
    #[arg(
        long,
        env = "LISTEN_PORT",
        default_value_t = 18080,
        value_name = "PORT"
    )]
    pub port: u16,

    /// Base URL every request is forwarded to [default: https://api.anthropic.com; with
    /// --agent codex, the ChatGPT backend (TOKENKEEPER_CODEX_API_URL's origin), or
    /// https://api.openai.com for a slot holding an API key].
    #[arg(long, env = "TARGET", value_name = "URL")]
    pub target: Option<String>,

    /// Take the token from this slot (kept fresh) instead of stdin.
    #[arg(long, value_name = "NAME", add = super::slot_completer())]
    pub slot: Option<String>,

    /// Serve from several slots of the agent (comma-separated names, or `all`): each new
    /// conversation goes to the slot --strategy picks, and a request whose slot has reached its
    /// limit goes again on another while that one cools down until its reset.
    #[arg(
        long,
        value_name = "NAME,...|all",
        value_delimiter = ',',
        conflicts_with = "slot"
    )]
    pub pool: Vec<String>,

    /// How the pool picks a slot: `best` (most quota left) or `next` (stay on one slot until
    /// its limit, then the next in `list` order).
    #[arg(long, value_enum, default_value = "best", value_name = "HOW")]
    pub strategy: crate::pool::Strategy,

    #[command(flatten)]
    pub agent: AgentArg,

    #[command(flatten)]
    pub route: AuthArgs,

    /// The phantom value clients must present. Prefer the environment variable: a command
    /// line is visible to every local user.
    #[arg(
        long,
        env = "TOKENKEEPER_CLIENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub client_token: Option<String>,

    /// Admit named clients, each with its own token, from a file of `NAME sha256:HEX` lines
    /// (made by `tokenkeeper proxy-clients add`), re-read on SIGHUP; the access log names the
    /// client.
    #[arg(
        long,
        env = "TOKENKEEPER_PROXY_CLIENTS",
        value_name = "FILE",
        conflicts_with = "client_token"
    )]
    pub clients: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (re-read on SIGHUP).
    #[arg(
        long,
        env = "TOKENKEEPER_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (a file of your own, mode 0600).
    #[arg(
        long,
        env = "TOKENKEEPER_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// How long open streams may go on after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = super::duration)]
    pub grace: Duration,

    /// Listen beyond loopback over plain HTTP, where the client token and every prompt cross the
    /// network in clear (a container's own port, mapped to the host's loopback, is the usual
    /// case).
    #[arg(long, env = "TOKENKEEPER_INSECURE_LISTEN", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure_listen: bool,

    /// Close a connection whose request head has not arrived, or that sat idle, this long
    /// (nginx's keep-alive default).
    #[arg(long, default_value = "75s", value_parser = super::duration)]
    pub header_timeout: Duration,

    /// Connections open at once; past it a client gets a 503 and the connection is closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Worker threads [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

/// Where the real token goes upstream; shared by `proxy` and `exec`.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// Where the real token goes upstream.
    #[arg(long, value_enum, env = "TOKENKEEPER_PROXY_AUTH", default_value_t = AuthMode::Bearer)]
    pub auth: AuthMode,

    /// Header that carries the token with --auth gateway (e.g. cf-aig-authorization).
    #[arg(long, value_name = "NAME", required_if_eq("auth", "gateway"))]
    pub auth_header: Option<String>,

    /// Scheme put before the token in --auth-header (e.g. Bearer); none by default.
    #[arg(long, value_name = "SCHEME", requires = "auth_header")]
    pub auth_scheme: Option<String>,
}

impl AuthArgs {
    pub fn auth(&self) -> Result<Auth> {
        Ok(match self.auth {
            AuthMode::Bearer => Auth::Bearer,
            AuthMode::ApiKey => Auth::ApiKey,
            AuthMode::Gateway => {
                let name = self.auth_header.as_deref().unwrap_or_default();
                let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::usage(format!("--auth-header '{name}' is not a header name"))
                })?;
                Auth::Gateway {
                    header,
                    scheme: self.auth_scheme.clone().filter(|s| !s.is_empty()),
                }
            }
        })
    }
}

/// How the proxy talks to its target; shared by `proxy` and `exec`.
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// Also trust the CA certificates in this PEM file (SSL_CERT_FILE replaces the system's).
    #[arg(long, env = "TOKENKEEPER_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Give up connecting to the target after this long.
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    pub connect_timeout: Duration,

    /// Close pooled connections to the target unused for this long.
    #[arg(long, default_value = "90s", value_parser = super::duration)]
    pub idle_timeout: Duration,

    /// Give up waiting for the target's response headers after this long.
    #[arg(long, default_value = "10m", value_parser = super::duration)]
    pub response_timeout: Duration,
}

impl UpstreamArgs {
    pub fn settings(&self, target: Target, auth: Auth, clients: Clients) -> Settings {
        Settings {
            target,
            auth,
            clients,
            tls: None,
            response_timeout: self.response_timeout,
            upstream: UpstreamOptions {
                ca_cert: self.ca_cert.clone(),
                connect_timeout: self.connect_timeout,
                idle_timeout: self.idle_timeout,
            },
            local_answers: Vec::new(),
            extra_headers: Vec::new(),
            limits: crate::proxy::Limits::default(),
            public: false,
        }
    }
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let listen = listen_address(args.listen.as_deref(), args.port)?;
    let agent = args.agent.agent;
    let pool = match args.pool.is_empty() {
        true => None,
        false => Some(SlotPool::open(paths, agent, &args.pool, args.strategy)?),
    };
    // What the slot's agent wants upstream: its default target and non-secret headers.
    let slot_login = match &args.slot {
        Some(selector) => {
            let mut keeper = crate::keeper::Keeper::open(paths.clone())?;
            let slot = keeper.resolve(agent, Some(selector))?;
            Some(keeper.credential(&slot)?)
        }
        None => None,
    };
    let target = match (&args.target, &pool) {
        (Some(url), _) => Target::parse(url)?,
        (None, Some(pool)) => Target::parse(pool.target())?,
        (None, None) => Target::parse(&agent.proxy_target(slot_login.as_ref()))?,
    };
    let mut auth = args.route.auth()?;
    let clients = match (args.client_token, &args.clients) {
        (Some(token), _) if token.trim().is_empty() => {
            return Err(Error::usage("the client token is empty"));
        }
        (Some(token), _) => Clients::One(Secret::new(token)),
        (None, Some(file)) => {
            let named = NamedClients::open(file)?;
            if named.is_empty() {
                warn!(
                    "{} names no client yet: every request is refused until it does (then send SIGHUP)",
                    file.display()
                );
            }
            Clients::Named(named)
        }
        (None, None) => Clients::Anyone,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(ListenerTls::open(cert, key)?)),
        _ => None,
    };
    if !listen.ip().is_loopback() && tls.is_none() && !args.insecure_listen {
        return Err(Error::usage(format!(
            "refusing to listen on {listen} over plain HTTP: the client token and every request would cross the network in clear"
        ))
        .with_hint("give the listener a certificate (--tls-cert, --tls-key), listen on 127.0.0.1, or pass --insecure-listen (TOKENKEEPER_INSECURE_LISTEN=1) where the network is your own, e.g. a container's mapped port"));
    }
    if !clients.checked() && !listen.ip().is_loopback() {
        return Err(Error::usage(format!(
            "refusing to listen on {listen} without a client token: anyone who can reach it could use the account"
        ))
        .with_hint("set TOKENKEEPER_CLIENT_TOKEN to the phantom value your agent sends, give --clients FILE, or listen on 127.0.0.1"));
    }
    // Stdin is read before anything else, so a writer waiting on it is released at once.
    let fixed = match (&args.slot, &pool) {
        (Some(_), _) | (_, Some(_)) => None,
        (None, None) => {
            let (mode, token) = stdin_token()?;
            match mode.as_deref() {
                Some("oauth") => auth = Auth::Bearer,
                Some("api_key") => auth = Auth::ApiKey,
                // A gateway takes `Authorization: Bearer` unless --auth-header says otherwise.
                Some("gateway") if args.route.auth != AuthMode::Gateway => {
                    auth = Auth::Gateway {
                        header: hyper::header::AUTHORIZATION,
                        scheme: Some("Bearer".into()),
                    }
                }
                _ => {}
            }
            Some(token)
        }
    };
    let mut settings = args.upstream.settings(target, auth, clients);
    settings.public = !listen.ip().is_loopback();
    let scheme = if tls.is_some() { "https" } else { "http" };
    settings.tls = tls;
    settings.limits = crate::proxy::Limits {
        header_timeout: args.header_timeout,
        max_connections: args.max_connections as usize,
        ..crate::proxy::Limits::default()
    };
    if settings.public && settings.tls.is_none() {
        warn!(
            "listening on {listen} over plain HTTP: requests and the client token cross the network in clear"
        );
    }
    if let Some(credential) = &slot_login {
        settings.extra_headers = agent.upstream_headers(credential);
    }

    let tokens = match (fixed, pool) {
        (Some(token), _) => TokenSource::Fixed(token),
        (None, Some(pool)) => TokenSource::Pool(Box::new(pool)),
        (None, None) => {
            let slot = args.slot.expect("either stdin or a slot");
            TokenSource::Slot(Box::new(SlotTokens::open(
                paths.clone(),
                args.agent.agent,
                Some(slot),
            )?))
        }
    };
    let proxy = Arc::new(Proxy::new(settings, tokens)?);
    let listener = proxy::bind(listen)
        .map_err(|err| Error::failure(format!("cannot listen on {listen}: {err}")))?;
    // Watched before serving starts, so an early SIGTERM is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|err| Error::failure(format!("cannot watch signals: {err}")))?;
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let running = proxy::start(proxy.clone(), listener, threads, args.grace)?;
    let bound = running.addr();
    if !proxy.checks_clients() {
        warn!(
            "no client token: any process on this machine can use this proxy (set TOKENKEEPER_CLIENT_TOKEN)"
        );
    }
    info!(
        "listening on {scheme}://{bound}, forwarding to {}",
        proxy.target()
    );
    if format == Format::Json {
        let line = json!({
            "listen": bound.to_string(),
            "url": format!("{scheme}://{bound}"),
            "target": proxy.target().to_string(),
        });
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(Error::from_stdout)?;
    }
    for signal in signals.forever() {
        if signal == SIGHUP {
            for reloaded in proxy.reload() {
                match reloaded {
                    Ok(what) => info!("SIGHUP: {what}"),
                    Err(err) => warn!(
                        "SIGHUP: {}; still using what was loaded before",
                        err.message()
                    ),
                }
            }
            continue;
        }
        let name = if signal == SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        info!("{name}: stopping");
        break;
    }
    running.stop();
    Ok(0)
}

/// `ADDR:PORT`, `ADDR` (port from `LISTEN_PORT`), or nothing: 127.0.0.1.
fn listen_address(listen: Option<&str>, port: u16) -> Result<SocketAddr> {
    let Some(text) = listen.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let host = text.trim_start_matches('[').trim_end_matches(']');
    match host {
        "localhost" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => host
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, port))
            .map_err(|_| {
                Error::usage(format!("--listen '{text}' is not an address"))
                    .with_hint("use e.g. 127.0.0.1:18080, 0.0.0.0 or [::1]:8080")
            }),
    }
}

/// Auth modes a start-up line may name before the credential (the agent-loop proxy's words).
const STDIN_MODES: [&str; 3] = ["oauth", "api_key", "gateway"];

/// The token from stdin, and the auth mode when a mode line came first.
fn stdin_token() -> Result<(Option<String>, Secret)> {
    let (mode, line) = input::take_stdin_line("echo \"$TOKEN\" | tokenkeeper proxy", &STDIN_MODES)?;
    let (credential, _) = crate::agent::credential::Credential::from_input(
        &line,
        "standard input",
        jiff::Timestamp::now(),
    )
    .map_err(|err| {
        Error::failure(err.message().to_string()).with_hint(
            "pipe one line: the access token, or a credential JSON on one line; or use --slot NAME",
        )
    })?;
    Ok((mode, credential.access_token()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let at = |text: Option<&str>| listen_address(text, 18080).map(|a| a.to_string());
        assert_eq!(at(None).unwrap(), "127.0.0.1:18080");
        assert_eq!(at(Some("0.0.0.0")).unwrap(), "0.0.0.0:18080");
        assert_eq!(at(Some("127.0.0.1:9")).unwrap(), "127.0.0.1:9");
        assert_eq!(at(Some("[::1]:7")).unwrap(), "[::1]:7");
        assert_eq!(at(Some("::1")).unwrap(), "[::1]:18080");
        assert_eq!(at(Some("localhost")).unwrap(), "127.0.0.1:18080");
        assert!(at(Some("example.com:80")).is_err());
    }
}

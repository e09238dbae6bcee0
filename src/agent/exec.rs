//! What `exec` needs of an agent: the phantom credential its child gets, where the private
//! proxy forwards to by default, what the proxy answers itself, and the child's environment.

use std::any::Any;
use std::net::SocketAddr;
use std::process::Command;

use http::Method;

use super::{Agent, claude, codex};
use crate::agent::Credential;
use crate::error::{Error, Result};
use crate::proxy::LocalAnswer;
use crate::secret::Secret;

pub struct ExecPlan {
    /// What the child presents to the proxy; the proxy's client token.
    pub client_token: Secret,
    /// The upstream when `--target` is not given.
    pub default_target: String,
    pub local_answers: Vec<LocalAnswer>,
    kind: Kind,
}

enum Kind {
    Claude,
    Codex(codex::exec::Phantom),
}

impl Agent {
    /// The plan for running this agent behind a private proxy with `credential`'s account.
    pub fn exec_plan(self, credential: &Credential) -> Result<ExecPlan> {
        match self {
            Agent::Claude => Ok(ExecPlan {
                client_token: Secret::random("tokenkeeper-phantom-")?,
                default_target: crate::agent::claude::provider::Endpoints::from_env().api_url,
                local_answers: Vec::new(),
                kind: Kind::Claude,
            }),
            Agent::Codex => {
                let identity = credential.codex_identity().ok_or_else(|| {
                    Error::failure("this slot does not hold a Codex login (auth.json)")
                })?;
                if credential.refresh_token().is_none() {
                    return Err(Error::usage(
                        "an API-key login goes to the OpenAI API, not the ChatGPT backend: run codex with it directly, or use tokenkeeper proxy --agent codex --auth api-key",
                    ));
                }
                let phantom = codex::exec::Phantom::new(&identity)?;
                Ok(ExecPlan {
                    client_token: phantom.access.clone(),
                    default_target: origin(&codex::provider::api_url()),
                    local_answers: vec![LocalAnswer {
                        method: Method::POST,
                        path: codex::exec::REFRESH_PATH.to_string(),
                        content_type: "application/json",
                        body: phantom.refresh_answer(),
                    }],
                    kind: Kind::Codex(phantom),
                })
            }
        }
    }

    /// Where `proxy --agent A` forwards by default, for a slot holding `credential`.
    pub fn proxy_target(self, credential: Option<&Credential>) -> String {
        match self {
            // The agent-loop proxy's default, whatever TOKENKEEPER_CLAUDE_API_URL says.
            Agent::Claude => "https://api.anthropic.com".to_string(),
            Agent::Codex if credential.is_some_and(|c| c.refresh_token().is_none()) => {
                "https://api.openai.com".to_string()
            }
            Agent::Codex => origin(&codex::provider::api_url()),
        }
    }

    /// Non-secret headers the agent's backend expects beside the token.
    pub fn upstream_headers(
        self,
        credential: &Credential,
    ) -> Vec<(http::HeaderName, http::HeaderValue)> {
        match self {
            Agent::Claude => Vec::new(),
            Agent::Codex => credential
                .codex_identity()
                .and_then(|identity| identity.account_id)
                .and_then(|id| http::HeaderValue::try_from(id).ok())
                .map(|value| vec![(http::HeaderName::from_static("chatgpt-account-id"), value)])
                .unwrap_or_default(),
        }
    }

    /// Credentials in the environment that the agent would use instead of the proxy's phantom.
    pub fn overriding_env(self) -> &'static [&'static str] {
        match self {
            Agent::Claude => &claude::ENV_OVERRIDING_CREDENTIALS,
            Agent::Codex => &codex::exec::ENV_OVERRIDING_CREDENTIALS,
        }
    }

    /// `exec --env`: the real token in the child's environment, where the agent reads one.
    pub fn put_token_in_env(self, command: &mut Command, credential: &Credential) -> Result<()> {
        match self {
            Agent::Claude => {
                command.env(
                    claude::ENV_OAUTH_TOKEN,
                    credential.access_token().expose_secret(),
                );
                Ok(())
            }
            Agent::Codex if credential.refresh_token().is_none() => {
                command.env("OPENAI_API_KEY", credential.access_token().expose_secret());
                Ok(())
            }
            Agent::Codex => Err(Error::usage(
                "Codex reads a ChatGPT login from its auth.json, not from the environment: leave out --env",
            )),
        }
    }
}

impl ExecPlan {
    /// Sets up the child to use the proxy at `address`; what is returned is kept until the
    /// child has exited (Codex's private home, removed then).
    pub fn prepare_child(
        &self,
        command: &mut Command,
        address: SocketAddr,
    ) -> Result<Option<Box<dyn Any>>> {
        match &self.kind {
            Kind::Claude => {
                command
                    .env(claude::ENV_BASE_URL, format!("http://{address}"))
                    .env(claude::ENV_OAUTH_TOKEN, self.client_token.expose_secret());
                Ok(None)
            }
            Kind::Codex(phantom) => {
                let home = codex::exec::ChildHome::prepare(
                    &codex::home()?,
                    phantom,
                    address.port(),
                    command,
                )?;
                Ok(Some(Box::new(home)))
            }
        }
    }
}

/// `scheme://host[:port]` of a URL: Codex's base URLs carry the `/backend-api` path
/// themselves, so the proxy forwards to the origin.
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{host}")
        }
        None => url.to_string(),
    }
}

/// A fresh random client token, useless anywhere but at this one proxy.
#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_of_a_base_url() {
        assert_eq!(
            super::origin("https://chatgpt.com/backend-api"),
            "https://chatgpt.com"
        );
        assert_eq!(
            super::origin("http://127.0.0.1:9/backend-api/"),
            "http://127.0.0.1:9"
        );
        assert_eq!(super::origin("http://h:1"), "http://h:1");
    }
}

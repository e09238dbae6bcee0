//! The header steps between a client's request and the upstream's: which requests are taken at
//! all, who may use the proxy, which headers cross, and where the real token goes.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Uri, Version};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Where the real token goes in an upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`: OAuth and setup tokens at api.anthropic.com.
    Bearer,
    /// `x-api-key: <token>`: Console API keys.
    ApiKey,
    /// `<header>: [<scheme> ]<token>`: an LLM gateway that takes its own credential header.
    Gateway {
        header: HeaderName,
        scheme: Option<String>,
    },
}

/// The one upstream every request goes to: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct Target {
    scheme: Scheme,
    authority: http::uri::Authority,
    prefix: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::usage(format!("target '{text}' {why}"))
                .with_hint("give a base URL such as https://api.anthropic.com")
        };
        let uri: Uri = text.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("must be http:// or https://"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            scheme,
            authority,
            prefix,
        })
    }

    /// The upstream path for a request's path and query: the target's prefix, then the
    /// request's.
    pub fn path_for(&self, path_and_query: Option<&PathAndQuery>) -> PathAndQuery {
        match path_and_query {
            // Shares the request's bytes: no copy, no second parse.
            Some(path) if self.prefix.is_empty() => path.clone(),
            _ => {
                let tail = path_and_query.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{tail}", self.prefix))
                    .expect("a valid path with a valid prefix stays valid")
            }
        }
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// Why a request is not forwarded at all, before anyone's credentials are looked at.
pub fn refuse_form<B>(request: &Request<B>) -> Option<&'static str> {
    if request.method() == Method::CONNECT {
        return Some("CONNECT is not supported: this proxy forwards to one target only");
    }
    // HTTP/2 always carries scheme and authority; in HTTP/1 they mean an absolute-form URI,
    // i.e. a client treating this as a forward proxy to anywhere.
    if request.version() < Version::HTTP_2 && request.uri().authority().is_some() {
        return Some(
            "absolute-form request URIs are not supported: send requests to this proxy's own address",
        );
    }
    None
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and must not be
/// forwarded; `Host` is the target's, set from the upstream URI.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One scan; only the names actually present are removed (each removal hashes).
    let is_hop = |name: &HeaderName| HOP_BY_HOP.contains(name) || name == header::TRAILER;
    let mut present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop(name))
        .cloned()
        .collect();
    if present.is_empty() {
        return;
    }
    present.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            // The usual values name no header besides the ones removed anyway.
            .filter(|name| {
                !name.eq_ignore_ascii_case("keep-alive") && !name.eq_ignore_ascii_case("close")
            })
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok()),
    );
    for name in &present {
        headers.remove(name);
    }
}

/// The real token as the header that carries it upstream, built once per token.
pub struct Credential {
    token: Secret,
    name: HeaderName,
    value: HeaderValue,
}

impl Credential {
    pub fn new(auth: &Auth, token: Secret) -> Result<Self> {
        let (name, value) = match auth {
            Auth::Bearer => (
                header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            ),
            Auth::ApiKey => (
                HeaderName::from_static("x-api-key"),
                token.expose_secret().to_string(),
            ),
            Auth::Gateway { header, scheme } => {
                let value = match scheme {
                    Some(scheme) => format!("{scheme} {}", token.expose_secret()),
                    None => token.expose_secret().to_string(),
                };
                (header.clone(), value)
            }
        };
        let mut value = HeaderValue::try_from(zeroize::Zeroizing::new(value).as_str())
            .map_err(|_| Error::failure("the token has characters a header cannot carry"))?;
        // Keeps the value out of HTTP/2 header compression tables.
        value.set_sensitive(true);
        Ok(Self { token, name, value })
    }

    pub fn token(&self) -> &Secret {
        &self.token
    }
}

/// Replaces whatever credentials the client sent with the real one.
pub fn set_credentials(headers: &mut HeaderMap, credential: &Credential) {
    headers.remove(header::AUTHORIZATION);
    headers.remove("x-api-key");
    headers.remove(header::HOST);
    headers.insert(credential.name.clone(), credential.value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn target_keeps_a_path_prefix_and_appends_the_request_path() {
        let target = Target::parse("https://gw.example.com/anthropic/").unwrap();
        let pq = PathAndQuery::from_static("/v1/messages?beta=true");
        assert_eq!(
            target.path_for(Some(&pq)).as_str(),
            "/anthropic/v1/messages?beta=true"
        );
        assert_eq!(target.path_for(None).as_str(), "/anthropic/");
        let plain = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(plain.path_for(Some(&pq)).as_str(), "/v1/messages?beta=true");
        assert_eq!(plain.path_for(None).as_str(), "/");
        assert_eq!(plain.to_string(), "http://127.0.0.1:9000");
    }

    #[test]
    fn targets_that_are_not_plain_base_urls_are_refused() {
        for bad in [
            "api.anthropic.com",
            "ftp://x",
            "https://user:pw@x.com",
            "https://x.com/?a=1",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_and_absolute_form_are_refused_but_origin_form_is_not() {
        let connect = Request::builder()
            .method("CONNECT")
            .uri("example.com:443")
            .body(())
            .unwrap();
        assert!(refuse_form(&connect).is_some());
        let absolute = Request::builder()
            .uri("http://evil.example/v1/messages")
            .body(())
            .unwrap();
        assert!(refuse_form(&absolute).is_some());
        let h2 = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://127.0.0.1:1/v1/messages")
            .body(())
            .unwrap();
        assert!(refuse_form(&h2).is_none());
        let origin = Request::builder().uri("/v1/messages").body(()).unwrap();
        assert!(refuse_form(&origin).is_none());
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic abc"),
            ("anthropic-beta", "oauth-2025-04-20"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort();
        assert_eq!(
            left,
            ["anthropic-beta", "anthropic-version", "content-type"]
        );
    }

    #[test]
    fn client_credentials_are_replaced_in_every_mode() {
        let token = Secret::new("sk-ant-oat01-PLANTED".into());
        let client = [
            ("authorization", "Bearer phantom"),
            ("x-api-key", "phantom"),
            ("host", "127.0.0.1:1"),
        ];

        let set = |h: &mut HeaderMap, auth: &Auth| {
            set_credentials(h, &Credential::new(auth, token.clone()).unwrap())
        };
        let mut h = headers(&client);
        set(&mut h, &Auth::Bearer);
        assert_eq!(h["authorization"], "Bearer sk-ant-oat01-PLANTED");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h.len(), 1);

        let mut h = headers(&client);
        set(&mut h, &Auth::ApiKey);
        assert_eq!(h["x-api-key"], "sk-ant-oat01-PLANTED");
        assert_eq!(h.len(), 1);

        let mut h = headers(&client);
        let gateway = Auth::Gateway {
            header: HeaderName::from_static("cf-aig-authorization"),
            scheme: Some("Bearer".into()),
        };
        set(&mut h, &gateway);
        assert_eq!(h["cf-aig-authorization"], "Bearer sk-ant-oat01-PLANTED");
        assert_eq!(h.len(), 1);
    }
}

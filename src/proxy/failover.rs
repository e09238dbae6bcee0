//! Per-request failover across a pool's slots: a request whose slot has reached its limit goes
//! again on another slot, so the agent sees no error and keeps its context.

use http::header::HeaderMap;
use http::{Response, StatusCode, Uri};
use jiff::Timestamp;
use tracing::info;

use super::body::{self, Exchange, ProxyBody, Recorded};
use super::connection::Received;
use super::limit::{self, Verdict};
use super::pool::SlotPool;
use super::{Worker, no_token};

/// The headers that name an agent's conversation: Claude Code's session id, Codex's.
const SESSION_HEADERS: [&str; 2] = ["x-claude-code-session-id", "session_id"];
/// The longest conversation name kept; longer ones are not names.
const SESSION_MAX: usize = 256;

/// A limited answer kept while other slots are tried: the client gets the one whose slot is
/// back soonest if no slot can take the request.
struct Limited {
    response: Response<ProxyBody>,
    latency: std::time::Duration,
    member: usize,
    until: Timestamp,
}

impl Worker {
    pub(super) async fn forward_pooled(
        &self,
        pool: &SlotPool,
        parts: http::request::Parts,
        uri: Uri,
        incoming: Received,
        mut exchange: Exchange,
    ) -> Response<ProxyBody> {
        let session = session_of(&parts.headers);
        let (recorded, replay) = Recorded::new(incoming);
        let mut first_body = Some(body::boxed(recorded));
        let mut tried: Vec<usize> = Vec::new();
        let mut limited: Option<Limited> = None;
        loop {
            let member = match pool.pick(session, &tried) {
                Some(member) => member,
                // Every slot cooled down before this request reached one: the one back soonest
                // is asked, and its own answer (its 429 and reset, most likely) is the client's.
                None if tried.is_empty() => match pool.back_soonest(&tried) {
                    Some(member) => member,
                    None => return no_token(exchange, "no slot of the pool can take requests"),
                },
                None => {
                    let kept = limited.expect("a slot was tried and limited");
                    info!(slot = %pool.member(kept.member).name, "every slot of the pool is limited");
                    return self.relay(Ok((kept.response, kept.latency)), exchange, kept.member);
                }
            };
            let body = match first_body.take() {
                Some(body) => body,
                None => match replay.body() {
                    Some(bytes) => body::full(bytes),
                    // Too large to send again: the client gets the limited answer.
                    None => {
                        let kept = limited.expect("a resend follows a limited answer");
                        return self.relay(
                            Ok((kept.response, kept.latency)),
                            exchange,
                            kept.member,
                        );
                    }
                },
            };
            if let Some(from) = tried.last() {
                self.proxy.metrics.pool_failover(&pool.member(*from).name);
                info!(
                    from = %pool.member(*from).name,
                    to = %pool.member(member).name,
                    "sending the request again on another slot"
                );
            }
            tried.push(member);
            let slot = pool.member(member);
            exchange.slot(slot.name.clone());
            self.proxy.metrics.pool_request(&slot.name);
            let mut headers = parts.headers.clone();
            for (name, value) in &slot.headers {
                headers.insert(name.clone(), value.clone());
            }
            let sent = self
                .send_renewing(
                    &slot.tokens,
                    &parts.method,
                    &headers,
                    uri.clone(),
                    body,
                    &replay,
                )
                .await;
            let (response, latency) = match sent {
                Ok(Ok(answered)) => answered,
                Ok(Err(failed)) => {
                    return self.relay::<body::ProxyBody>(Err(failed), exchange, member);
                }
                Err(why) => return no_token(exchange, &why),
            };
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                return self.relay(Ok((response, latency)), exchange, member);
            }
            let (response, verdict) = limit::judge(pool.agent(), response).await;
            let Verdict::Reached(until) = verdict else {
                // A burst: the client waits and retries, as it would without the pool.
                return self.relay(Ok((response, latency)), exchange, member);
            };
            pool.observe(member, response.headers());
            pool.cool(member, until);
            self.proxy.metrics.pool_cooled(&slot.name);
            if limited.as_ref().is_none_or(|kept| until < kept.until) {
                limited = Some(Limited {
                    response,
                    latency,
                    member,
                    until,
                });
            }
        }
    }
}

/// The conversation a request belongs to, as the agent names it; "" when it names none.
fn session_of(headers: &HeaderMap) -> &str {
    SESSION_HEADERS
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= SESSION_MAX)
        .unwrap_or("")
}

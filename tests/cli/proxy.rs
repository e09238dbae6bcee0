//! The proxy: real HTTP on loopback between a client, `tokenkeeper proxy` and the fake provider.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::provider::{Failure, FakeProvider, SSE_EVENTS, download_byte};
use crate::support::server::{Server, block_on, http, metric};
use crate::support::*;

const PHANTOM: &str = "phantom-client-token";

/// A proxy fed `token` on stdin, forwarding to `target`, admitting clients with `PHANTOM`.
fn stdin_proxy(env: &Env, token: &str, target: &str, extra: &[&str]) -> Server {
    let mut args = vec!["proxy", "--listen", "127.0.0.1:0", "--format", "json"];
    args.extend_from_slice(extra);
    env.cmd(&args)
        .env("TARGET", target)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{token}\n"))
        .serve()
}

/// A proxy serving slot `slot`, admitting clients with `PHANTOM`.
fn slot_proxy(env: &Env, provider: &FakeProvider, slot: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "proxy",
        "--slot",
        slot,
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    env.cmd(&args)
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .serve()
}

/// POSTs a small Messages request with the phantom token; (status, headers, body).
fn post_message(proxy: &Server, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    block_on(async {
        let response = http()
            .post(proxy.url("/v1/messages?beta=true"))
            .bearer_auth(PHANTOM)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    })
}

fn get_text(url: &str) -> (u16, String) {
    block_on(async {
        let response = http().get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_phantom_token_is_swapped_for_the_real_one_and_end_to_end_headers_pass_unchanged() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);

    let (status, body) = get_text(&proxy.url("/health"));
    assert_eq!(status, 200);
    assert!(body.starts_with("agent-loop-proxy ok"), "{body}");

    let response = block_on(async {
        http()
            .post(proxy.url("/v1/messages?beta=true"))
            .header("authorization", format!("Bearer {PHANTOM}"))
            .header("x-api-key", PHANTOM)
            .header(
                "anthropic-beta",
                "oauth-2025-04-20,interleaved-thinking-2025-05-14",
            )
            .header("anthropic-version", "2023-06-01")
            .header("x-stainless-lang", "js")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "for the first hop only")
            .header("content-type", "application/json")
            .body(r#"{"model":"claude-fake","messages":[]}"#)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(response.status(), 200);
    let body: Value = block_on(response.json()).unwrap();
    assert_eq!(body["content"][0]["text"], "hello from the fake provider");

    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(
        header_of(&headers, "authorization"),
        Some(format!("Bearer {}", login.access).as_str())
    );
    assert_eq!(
        header_of(&headers, "x-api-key"),
        None,
        "client credentials are removed"
    );
    assert_eq!(
        header_of(&headers, "anthropic-beta"),
        Some("oauth-2025-04-20,interleaved-thinking-2025-05-14")
    );
    assert_eq!(header_of(&headers, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header_of(&headers, "x-stainless-lang"), Some("js"));
    assert_eq!(
        header_of(&headers, "x-private"),
        None,
        "named in Connection"
    );
    let upstream_host = provider.url.trim_start_matches("http://");
    assert_eq!(header_of(&headers, "host"), Some(upstream_host));

    // curl as the client, too.
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-X", "POST", "-H"])
        .arg(format!("x-api-key: {PHANTOM}"))
        .args(["-d", "{}", &proxy.url("/v1/messages")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello from the fake provider"));

    // A request's log line is written when its response has gone out.
    wait_until(10, "the access log lines", || {
        let log = proxy.log();
        log.contains("POST /v1/messages 200") && log.contains("GET /health 200")
    });
    let log = proxy.log();
    assert!(!log.contains("beta=true"), "queries are not logged: {log}");
    assert!(!log.contains(&login.access), "{log}");
    assert!(!log.contains(PHANTOM), "{log}");
}

#[test]
fn clients_without_the_client_token_get_an_anthropic_shaped_401_and_reach_nothing() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    let attempts: [&[(&str, &str)]; 4] = [
        &[],
        &[("authorization", "Bearer phantom-client-toke")],
        &[("x-api-key", "phantom-client-token-and-more")],
        &[("authorization", "phantom-client-token")],
    ];
    for headers in attempts {
        let (status, response_headers, body) = block_on(async {
            let mut request = http().post(proxy.url("/v1/messages")).body("{}");
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.headers().clone(),
                response.text().await.unwrap(),
            )
        });
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(response_headers["x-tokenkeeper-error"], "client-token");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(!body.to_string().contains(&login.access));
    }
    assert_eq!(provider.messages_calls(), 0, "nothing reached the upstream");
}

#[test]
fn without_a_client_token_it_listens_on_loopback_only_and_says_why() {
    let env = Env::new();
    // Beyond loopback, plain HTTP must be asked for...
    env.cmd(&["proxy", "--listen", "0.0.0.0:0"])
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", access("x")))
        .fails(2)
        .stderr_has("refusing to listen on 0.0.0.0:0 over plain HTTP")
        .stderr_has("hint: give the listener a certificate (--tls-cert, --tls-key), listen on 127.0.0.1, or pass --insecure-listen");
    // ...and even then needs a client token.
    let out = env
        .cmd(&["proxy", "--listen", "0.0.0.0:0", "--insecure-listen"])
        .stdin(format!("{}\n", access("x")))
        .fails(2);
    out.stderr_has("refusing to listen on 0.0.0.0:0 without a client token")
        .stderr_has("hint: set TOKENKEEPER_CLIENT_TOKEN");

    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let proxy = env
        .cmd(&["proxy", "--listen", "127.0.0.1:0", "--format", "json"])
        .env("TARGET", &provider.url)
        .stdin(format!("{}\n", login.access))
        .serve();
    wait_until(10, "the warning", || {
        proxy
            .log()
            .contains("any process on this machine can use this proxy")
    });
    let (status, _) = get_text(&proxy.url("/health"));
    assert_eq!(status, 200);
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(
        status, 200,
        "loopback clients need no token when none is set"
    );
}

#[test]
fn api_key_and_gateway_modes_put_the_token_where_asked() {
    let provider = FakeProvider::start();
    let env = Env::new();
    let token = access("api");

    let proxy = stdin_proxy(&env, &token, &provider.url, &["--auth", "api-key"]);
    post_message(&proxy, json!({}));
    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(header_of(&headers, "x-api-key"), Some(token.as_str()));
    assert_eq!(header_of(&headers, "authorization"), None);
    drop(proxy);

    let gateway = [
        "--auth",
        "gateway",
        "--auth-header",
        "cf-aig-authorization",
        "--auth-scheme",
        "Bearer",
    ];
    let proxy = stdin_proxy(&env, &token, &provider.url, &gateway);
    post_message(&proxy, json!({}));
    let (headers, _) = provider.last_messages_request().unwrap();
    let want = format!("Bearer {token}");
    assert_eq!(
        header_of(&headers, "cf-aig-authorization"),
        Some(want.as_str())
    );
    assert_eq!(header_of(&headers, "authorization"), None);
    assert_eq!(header_of(&headers, "x-api-key"), None);
    drop(proxy);

    env.cmd(&["proxy", "--auth", "gateway"])
        .stdin(format!("{token}\n"))
        .run()
        .code(2)
        .stderr_has("--auth-header");
}

#[test]
fn forward_proxy_requests_are_refused() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    // Absolute-form URI, as a client configured with this as its HTTP proxy sends.
    let absolute = Command::new("curl")
        .args(["-sS", "-i", "-x", &proxy.url(""), "-H"])
        .arg(format!("x-api-key: {PHANTOM}"))
        .arg("http://example.invalid/v1/messages")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&absolute.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("x-tokenkeeper-error: refused-request-form"),
        "{text}"
    );
    assert!(text.contains("invalid_request_error"), "{text}");

    // CONNECT, as for an https:// URL through an HTTP proxy.
    let mut stream = TcpStream::connect(&proxy.addr).unwrap();
    write!(
        stream,
        "CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\nx-api-key: {PHANTOM}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
    assert_eq!(provider.messages_calls(), 0);
}

#[test]
fn each_sse_event_reaches_the_client_when_the_upstream_sends_it() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    provider.hold_events();
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    let metrics_url = proxy.url("/metrics");

    block_on(async {
        let response = http()
            .post(proxy.url("/v1/messages?beta=true"))
            .bearer_auth(PHANTOM)
            .body(r#"{"stream":true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = response.bytes_stream();
        let mut received = String::new();
        // Reads until `event` has arrived; fails if the stream ends or 10 s pass first.
        async fn until(
            stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
            received: &mut String,
            event: &str,
        ) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !received.contains(event) {
                let chunk = tokio::time::timeout_at(deadline, stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("{event} did not arrive; got {received:?}"))
                    .unwrap_or_else(|| panic!("stream ended before {event}; got {received:?}"))
                    .unwrap();
                received.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }

        // The first event arrives while the upstream still holds the rest back.
        until(&mut stream, &mut received, "event: message_start").await;
        assert!(!received.contains("content_block_start"), "{received}");
        let metrics = http()
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric(&metrics, "tokenkeeper_proxy_open_streams"),
            Some(1.0),
            "{metrics}"
        );

        // Each released event arrives on its own, before the stream ends.
        provider.release_events(1);
        until(&mut stream, &mut received, "event: content_block_start").await;
        assert!(!received.contains("content_block_delta"), "{received}");
        provider.release_events(1);
        until(&mut stream, &mut received, r#""text":"hello""#).await;
        assert!(!received.contains("from the fake provider"), "{received}");

        provider.release_events(SSE_EVENTS.len());
        until(&mut stream, &mut received, "event: message_stop").await;
        assert!(
            stream.next().await.is_none(),
            "the stream ends after message_stop"
        );
        let expected: String = SSE_EVENTS
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect();
        assert_eq!(received, expected, "every byte, in order");
    });
    let (_, metrics) = get_text(&metrics_url);
    assert_eq!(
        metric(&metrics, "tokenkeeper_proxy_open_streams"),
        Some(0.0)
    );
}

/// 50 MiB of a repeating, position-dependent pattern, in 1 MiB chunks.
fn upload_chunks(total: usize) -> Vec<Vec<u8>> {
    (0..total)
        .step_by(1 << 20)
        .map(|start| {
            (start..(start + (1 << 20)).min(total))
                .map(|i| (i * 7 % 256) as u8)
                .collect()
        })
        .collect()
}

#[test]
fn fifty_mebibytes_stream_up_and_down_without_being_buffered() {
    const SIZE: usize = 50 << 20;
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);

    let before = proxy.peak_rss_kib();
    let chunks = upload_chunks(SIZE);
    let mut hash = Sha256::new();
    chunks.iter().for_each(|c| hash.update(c));
    let want_sha: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let answer: Value = block_on(async {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        http()
            .post(proxy.url("/test/upload"))
            .bearer_auth(PHANTOM)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(answer["bytes"], SIZE as u64);
    assert_eq!(answer["sha256"], want_sha.as_str());

    let (count, mismatches) = block_on(async {
        let response = http()
            .get(proxy.url(&format!("/test/download?bytes={SIZE}")))
            .bearer_auth(PHANTOM)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut stream = response.bytes_stream();
        let (mut count, mut mismatches) = (0u64, 0u64);
        while let Some(chunk) = stream.next().await {
            for byte in chunk.unwrap() {
                mismatches += u64::from(byte != download_byte(count));
                count += 1;
            }
        }
        (count, mismatches)
    });
    assert_eq!(count, SIZE as u64);
    assert_eq!(mismatches, 0);
    // Passing 100 MiB through must not have held either body in memory (the allocator's
    // own caches do grow a little).
    let grown = proxy.peak_rss_kib() - before;
    assert!(grown < 40 * 1024, "peak RSS grew by {grown} KiB");
}

#[test]
fn a_slow_client_holds_back_the_upstream_and_stalls_no_one_else() {
    const SIZE: u64 = 200 << 20;
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);

    // A client that asks for 200 MiB and reads only the first bytes.
    let mut slow = TcpStream::connect(&proxy.addr).unwrap();
    write!(
        slow,
        "GET /test/download?bytes={SIZE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PHANTOM}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    slow.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // The upstream stops producing once the buffers between it and the client are full.
    let mut last = 0;
    wait_until(30, "the download to stall", || {
        std::thread::sleep(Duration::from_millis(300));
        let now = provider.downloaded();
        let stalled = now == last && now > 0;
        last = now;
        stalled
    });
    assert!(
        last < SIZE / 4,
        "{last} bytes produced for a client that reads none"
    );

    // Others are served meanwhile.
    let (status, _, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);
    assert!(body.contains("hello from the fake provider"));

    // And the slow client still gets every byte when it reads on.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut rest = Vec::new();
    let mut reader = std::io::BufReader::new(slow);
    let mut line = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    reader.take(SIZE).read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len() as u64, SIZE);
    assert!(
        rest.iter()
            .enumerate()
            .all(|(i, b)| *b == download_byte(i as u64))
    );
}

#[test]
fn upstream_errors_pass_through_and_an_unreachable_upstream_gets_a_marked_502() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    provider.fail_next(1, Failure::Status(529));
    let (status, headers, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 529);
    assert!(body.contains("injected failure"), "{body}");
    assert!(
        headers.get("x-tokenkeeper-error").is_none(),
        "the upstream's own answer"
    );
    drop(proxy);

    let proxy = stdin_proxy(&env, &login.access, "http://127.0.0.1:9", &[]);
    let (status, headers, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 502);
    assert_eq!(headers["x-tokenkeeper-error"], "upstream-unreachable");
    assert_eq!(headers["content-type"], "application/json");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach http://127.0.0.1:9"),
        "{message}"
    );
    assert!(!body.contains(&login.access));
    let (_, metrics) = get_text(&proxy.url("/metrics"));
    assert_eq!(
        metric(&metrics, "tokenkeeper_proxy_upstream_errors_total"),
        Some(1.0)
    );
    let (code, log) = proxy.stop("TERM");
    assert_eq!(code, Some(0));
    assert!(log.contains("cannot reach"), "{log}");
    assert!(!log.contains(&login.access), "{log}");
}

#[test]
fn a_slot_proxy_refreshes_once_on_a_401_and_resends_the_request() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("me@example.com");
    env.add_login("work", &login);
    let proxy = slot_proxy(&env, &provider, "work", &["-vvv"]);

    // The provider stops taking the token early (as after a revocation of that access token).
    provider.kill_access(&login.access);
    let (status, _, body) = post_message(&proxy, json!({"model": "claude-fake"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(provider.refreshes_served(), 1);
    assert_eq!(provider.messages_calls(), 2, "refused once, then resent");
    let renewed = env.access_token_of("work");
    assert_ne!(renewed, login.access, "the new token is stored in the slot");
    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(
        header_of(&headers, "authorization"),
        Some(format!("Bearer {renewed}").as_str())
    );

    // The next request uses the renewed token at once.
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);
    assert_eq!(provider.refreshes_served(), 1);
    assert_eq!(provider.messages_calls(), 3);
    let (_, metrics) = get_text(&proxy.url("/metrics"));
    assert_eq!(
        metric(
            &metrics,
            "tokenkeeper_proxy_token_refreshes_total{outcome=\"refreshed\"}"
        ),
        Some(1.0)
    );
    let (code, log) = proxy.stop("TERM");
    assert_eq!(code, Some(0));
    let refresh = env.refresh_token_of("work");
    for secret in [&login.access, &login.refresh, &renewed, &refresh] {
        assert!(
            !log.contains(secret.as_str()),
            "a token in the trace log:\n{log}"
        );
    }
}

#[test]
fn a_slot_proxy_takes_up_a_refresh_another_process_made_without_spending_another() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("me@example.com");
    env.add_login("work", &login);
    let proxy = slot_proxy(&env, &provider, "work", &[]);
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);

    // The daemon (here: the CLI) refreshes; the proxy's token dies with the rotation.
    env.cmd(&["refresh", "work", "--force"]).ok();
    assert_eq!(provider.refreshes_served(), 1);
    let (status, _, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        provider.refreshes_served(),
        1,
        "the stored token was used, no new refresh"
    );
    assert!(provider.is_current(&env.refresh_token_of("work")));
}

#[test]
fn a_slot_that_needs_a_new_login_is_refused_at_start() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("me@example.com");
    env.add_login("work", &login);
    provider.revoke(&login.refresh);
    env.cmd(&["proxy", "--slot", "work", "--listen", "127.0.0.1:0"])
        .env("TARGET", &provider.url)
        .run()
        .code(1)
        .stderr_has("slot 'work' needs a new login")
        .stderr_has("log in again")
        .hides(&login.refresh);
}

#[test]
fn tls_upstreams_are_verified_against_the_system_roots_and_the_given_ca_and_speak_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, ca) = FakeProvider::start_tls(dir.path());
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let ca = ca.to_str().unwrap();

    let proxy = stdin_proxy(&env, &login.access, &provider.url, &["--ca-cert", ca]);
    let (status, _, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 200, "{body}");
    let (_, version) = provider.last_messages_request().unwrap();
    assert_eq!(
        version,
        axum::http::Version::HTTP_2,
        "HTTP/2 negotiated by ALPN"
    );
    drop(proxy);

    // SSL_CERT_FILE works as with OpenSSL.
    let proxy = env
        .cmd(&["proxy", "--listen", "127.0.0.1:0", "--format", "json"])
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .env("SSL_CERT_FILE", ca)
        .stdin(format!("{}\n", login.access))
        .serve();
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);
    drop(proxy);

    // Without the CA the certificate is not trusted.
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    let (status, headers, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tokenkeeper-error"], "upstream-unreachable");
    assert!(body.to_lowercase().contains("certificate"), "{body}");

    env.cmd(&["proxy", "--ca-cert", "/nonexistent/ca.pem"])
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .fails(1)
        .stderr_has("cannot read CA certificates from /nonexistent/ca.pem");
}

#[test]
fn sigterm_stops_accepting_and_lets_an_open_stream_finish() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    provider.hold_events();
    let env = Env::new();
    let proxy = stdin_proxy(&env, &login.access, &provider.url, &[]);
    let addr = proxy.addr.clone();

    let received = block_on(async {
        let response = http()
            .post(proxy.url("/v1/messages"))
            .bearer_auth(PHANTOM)
            .body(r#"{"stream":true}"#)
            .send()
            .await
            .unwrap();
        let mut stream = response.bytes_stream();
        let mut received = String::new();
        while !received.contains("message_start") {
            let chunk = stream.next().await.unwrap().unwrap();
            received.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        proxy.signal("TERM");
        // New connections are refused once the proxy has stopped accepting.
        tokio::task::spawn_blocking(move || {
            wait_until(10, "the listener to close", || {
                TcpStream::connect(&addr).is_err()
            })
        })
        .await
        .unwrap();
        provider.release_events(SSE_EVENTS.len());
        while let Some(chunk) = stream.next().await {
            received.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        received
    });
    assert!(
        received.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
        "{received}"
    );
    let (code, log) = proxy.wait(30);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn bad_start_up_input_is_a_one_line_error() {
    let env = Env::new();
    let run = |stdin: &str| {
        env.cmd(&["proxy", "--listen", "127.0.0.1:0"])
            .stdin(stdin)
            .fails(1)
    };
    run("\n").stderr_has("standard input is empty");
    run(&format!("{}\n", refresh("r")))
        .stderr_has("refresh token")
        .hides(&refresh("r"));
    run("{\"claudeAiOauth\": {\"accessToken\": 12\n").hides("accessToken\": 12");
    env.cmd(&["proxy", "--target", "ftp://example.com"])
        .stdin(format!("{}\n", access("a")))
        .fails(2)
        .stderr_has("must be http:// or https://");
    env.cmd(&["proxy", "--listen", "nowhere:80"])
        .stdin(format!("{}\n", access("a")))
        .fails(2)
        .stderr_has("is not an address");
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    env.cmd(&["proxy", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(format!("{}\n", access("a")))
        .fails(1)
        .stderr_has("cannot listen on 127.0.0.1:");
}

/// A port free right now (the listener is closed again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn listen_port_and_an_address_only_listen_work_as_in_the_docker_image() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();

    // LISTEN_PORT alone: that port on loopback, as the agent-loop proxy reads it.
    let port = free_port();
    let proxy = env
        .cmd(&["proxy", "--format", "json"])
        .env("LISTEN_PORT", &port.to_string())
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    assert_eq!(proxy.addr, format!("127.0.0.1:{port}"));
    drop(proxy);

    // The image's settings: every address, the port from LISTEN_PORT, a client token.
    let port = free_port();
    let proxy = env
        .cmd(&["proxy", "--format", "json"])
        .env("TOKENKEEPER_LISTEN", "0.0.0.0")
        .env("TOKENKEEPER_INSECURE_LISTEN", "1")
        .env("LISTEN_PORT", &port.to_string())
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    assert_eq!(proxy.addr, format!("0.0.0.0:{port}"));
    let (status, body) = get_text(&format!("http://127.0.0.1:{port}/health"));
    assert_eq!(status, 200);
    assert!(body.starts_with("agent-loop-proxy ok"));
}

#[test]
fn an_upstream_that_does_not_answer_in_time_gets_a_marked_502() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(
        &env,
        &login.access,
        &provider.url,
        &["--response-timeout", "1s"],
    );
    provider.fail_next(1, Failure::Slow(Duration::from_secs(5)));
    let (status, headers, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tokenkeeper-error"], "upstream-unreachable");
    assert!(body.contains("no response within 1s"), "{body}");
    // The next request is answered normally.
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);
    env.cmd(&["proxy", "--response-timeout", "soon"])
        .run()
        .code(2)
        .stderr_has("'soon' is not a duration");
}

#[test]
fn upstream_connections_are_reused_replaced_when_closed_and_dropped_when_idle() {
    let provider = FakeProvider::start();
    let login = provider.issue("me@example.com");
    let env = Env::new();
    let proxy = stdin_proxy(
        &env,
        &login.access,
        &provider.url,
        &["--threads", "1", "--idle-timeout", "1s"],
    );
    let ok = || assert_eq!(post_message(&proxy, json!({})).0, 200);
    for _ in 0..5 {
        ok();
    }
    assert_eq!(provider.connections(), 1, "five requests, one connection");

    // An answer that closes its connection: the next request goes out on a new one.
    provider.fail_next(1, Failure::Close);
    ok();
    ok();
    ok();
    assert_eq!(provider.connections(), 2);

    // Unused for longer than --idle-timeout: closed, and the next request connects anew.
    std::thread::sleep(Duration::from_millis(2500));
    ok();
    assert_eq!(provider.connections(), 3);
    assert_eq!(provider.messages_calls(), 9);
}

#[test]
fn a_target_that_does_not_take_the_connection_in_time_gets_a_marked_502() {
    // A listener whose accept queue is full: later connection attempts go unanswered.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(stream);
        assert!(queued.len() < 16, "the accept queue never filled");
    }

    let env = Env::new();
    let target = format!("http://{addr}");
    let proxy = stdin_proxy(
        &env,
        "sk-ant-oat01-planted-real-token",
        &target,
        &["--connect-timeout", "1s"],
    );
    let started = std::time::Instant::now();
    let (status, headers, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["x-tokenkeeper-error"], "upstream-unreachable");
    assert!(body.contains(&format!("cannot reach {target}")), "{body}");
    assert!(body.contains("within 1s"), "{body}");
    assert!(!body.contains("planted-real-token"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in time"
    );
}

#[test]
fn issue13_a_path_that_always_answers_401_does_not_rotate_the_lineage() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("storm@example.com");
    env.add_login("work", &login);
    let proxy = slot_proxy(&env, &provider, "work", &[]);
    let refused = |proxy: &Server| {
        block_on(async {
            http()
                .get(proxy.url("/test/unauthorized"))
                .bearer_auth(PHANTOM)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // The first 401 is for a token that might have been revoked: one refresh. Every later one is for a token refreshed less than a minute ago: it passes through.
    for _ in 0..5 {
        assert_eq!(refused(&proxy), 401);
    }
    assert_eq!(provider.refreshes_served(), 1, "one rotation, not five");
    assert_eq!(provider.unauthorized_calls(), 5);
    // Another process sees the same minute: no refresh there either.
    let second = slot_proxy(&env, &provider, "work", &[]);
    assert_eq!(refused(&second), 401);
    assert_eq!(provider.refreshes_served(), 1);
    // The lineage is intact and the real endpoint works with the current token.
    assert!(provider.is_current(&env.refresh_token_of("work")));
    let (status, _, _) = post_message(&proxy, json!({}));
    assert_eq!(status, 200);
}

#[test]
fn issue14_ralphs_start_up_contract_health_line_short_keys_and_unreachable_wording() {
    let provider = FakeProvider::start();
    let env = Env::new();
    // One line, as the spec says: the token; /health names the version and the mode.
    let proxy = stdin_proxy(&env, &access("one"), &provider.url, &[]);
    let (_, body) = get_text(&proxy.url("/health"));
    assert_eq!(
        body,
        format!(
            "agent-loop-proxy ok v={} mode=oauth\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    drop(proxy);

    // Two lines, as ralph's current proxy reads them: the mode, then the credential — here a
    // gateway-style key shorter than any Claude token, taken with a warning.
    let proxy = stdin_proxy(&env, "api_key\nsk-1234", &provider.url, &[]);
    let (_, body) = get_text(&proxy.url("/health"));
    assert!(body.ends_with(" mode=api_key\n"), "{body}");
    post_message(&proxy, json!({}));
    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(header_of(&headers, "x-api-key"), Some("sk-1234"));
    assert_eq!(header_of(&headers, "authorization"), None);
    let (_, log) = proxy.stop("TERM");
    assert!(log.contains("unusually short"), "{log}");
    assert!(!log.contains("sk-1234"), "{log}");

    let proxy = stdin_proxy(&env, "gateway\nlitellm-key", &provider.url, &[]);
    post_message(&proxy, json!({}));
    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(
        header_of(&headers, "authorization"),
        Some("Bearer litellm-key")
    );
    drop(proxy);

    // The spec's own smoke test pipes `test-token`.
    let proxy = stdin_proxy(&env, "test-token", "http://127.0.0.1:9", &[]);
    let (status, _, body) = post_message(&proxy, json!({}));
    assert_eq!(status, 502);
    assert!(body.contains("upstream unreachable"), "{body}");
    assert!(body.contains("cannot reach http://127.0.0.1:9"), "{body}");
}

#[test]
fn clients_that_open_connections_and_send_nothing_cannot_starve_the_others() {
    use std::io::{Read, Write};
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("flood@example.com");
    let proxy = env
        .cmd(&[
            "proxy",
            "--format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--header-timeout",
            "1s",
            "--max-connections",
            "20",
        ])
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    // 20 connections that send half a request head and then nothing: they fill the cap.
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&proxy.addr).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    wait_until(10, "the proxy to count them", || {
        raw_health(&proxy.addr) == Some(503)
    });
    // Past the cap: a clear 503 at once, and the connection closed.
    let mut extra = TcpStream::connect(&proxy.addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many open connections"));
    // The silent ones are closed once their head is late; then everyone is served again.
    for stream in &mut silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    wait_until(10, "a free slot", || {
        get_text(&proxy.url("/health")).0 == 200
    });
    // A head larger than the bound is refused, not buffered.
    let mut big = TcpStream::connect(&proxy.addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let _ = big.write_all(huge.as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
}

/// A GET of /health over a fresh connection: its status (503 when the connection limit
/// turned it away), or `None` when the connection failed.
fn raw_health(addr: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.get(9..12)?.parse().ok()
}

#[test]
fn metrics_beyond_loopback_need_the_client_token() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("metrics@example.com");
    let port = free_port();
    let proxy = env
        .cmd(&["proxy", "--format", "json", "--insecure-listen"])
        .env("TOKENKEEPER_LISTEN", "0.0.0.0")
        .env("LISTEN_PORT", &port.to_string())
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    assert!(proxy.log().contains("over plain HTTP"), "{}", proxy.log());
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(get_text(&url).0, 401);
    let status = block_on(async {
        http()
            .get(&url)
            .bearer_auth(PHANTOM)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    // /health stays open: it says nothing.
    assert_eq!(get_text(&format!("http://127.0.0.1:{port}/health")).0, 200);
}

#[test]
fn a_client_whose_body_breaks_gets_a_400_and_the_target_is_not_blamed() {
    use std::io::{Read, Write};
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("body@example.com");
    let proxy = env
        .cmd(&["proxy", "--format", "json", "--listen", "127.0.0.1:0"])
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    // A chunked body whose second chunk size is not a number.
    let mut stream = TcpStream::connect(&proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /test/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PHANTOM}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("x-tokenkeeper-error: client-body"),
        "{answer}"
    );
    assert!(!answer.contains("upstream unreachable"), "{answer}");
    let log = proxy.log();
    assert!(!log.contains("upstream unreachable"), "{log}");
}

/// An HTTPS client that trusts only the CA in `ca`.
fn https_client(ca: &std::path::Path) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// POSTs a Messages request over HTTPS with `token`; the status, or the error's text.
fn post_https(client: &reqwest::Client, url: &str, token: &str) -> Result<u16, String> {
    block_on(async {
        let response = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|err| format!("{err:?}"))?;
        Ok(response.status().as_u16())
    })
}

#[test]
fn a_listener_with_a_certificate_serves_https_beyond_loopback_and_takes_a_new_one_on_sighup() {
    use crate::support::provider::TlsIdentity;
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("tls@example.com");
    let dir = tempfile::tempdir().unwrap();
    let first = TlsIdentity::new(dir.path(), "first");
    let second = TlsIdentity::new(dir.path(), "second");
    let (cert, key) = (
        dir.path().join("proxy.pem"),
        dir.path().join("proxy-key.pem"),
    );
    let install = |identity: &TlsIdentity| {
        std::fs::copy(&identity.cert, &cert).unwrap();
        std::fs::copy(&identity.key, &key).unwrap();
    };
    install(&first);
    let tls_args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];

    // Beyond loopback without --insecure-listen: TLS is what makes it acceptable.
    let mut args = vec!["proxy", "--format", "json", "--listen", "0.0.0.0:0"];
    args.extend_from_slice(&tls_args);
    let proxy = env
        .cmd(&args)
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
        .stdin(format!("{}\n", login.access))
        .serve();
    let port = proxy.addr.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/v1/messages");
    assert!(
        !proxy.log().contains("plain HTTP"),
        "no plain-HTTP warning with TLS: {}",
        proxy.log()
    );
    assert!(
        proxy.log().contains(&format!("https://0.0.0.0:{port}")),
        "{}",
        proxy.log()
    );

    assert_eq!(post_https(&https_client(&first.ca), &url, PHANTOM), Ok(200));
    let (headers, _) = provider.last_messages_request().unwrap();
    assert_eq!(
        header_of(&headers, "authorization"),
        Some(format!("Bearer {}", login.access).as_str())
    );
    assert_eq!(post_https(&https_client(&first.ca), &url, "wrong"), Ok(401));
    // A client trusting another CA refuses the certificate.
    let refused = post_https(&https_client(&second.ca), &url, PHANTOM).unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    // Plain HTTP on the TLS port gets no HTTP answer: nothing is served in clear.
    assert_eq!(raw_health(&format!("127.0.0.1:{port}")), None);

    // A renewed certificate is taken up on SIGHUP, without a restart.
    install(&second);
    proxy.signal("HUP");
    wait_for(|| proxy.log().contains("certificate re-read"));
    assert_eq!(
        post_https(&https_client(&second.ca), &url, PHANTOM),
        Ok(200)
    );
    assert!(post_https(&https_client(&first.ca), &url, PHANTOM).is_err());
    // A broken one is not: the one in use stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    proxy.signal("HUP");
    wait_for(|| proxy.log().contains("still using what was loaded before"));
    assert_eq!(
        post_https(&https_client(&second.ca), &url, PHANTOM),
        Ok(200)
    );
    let log = proxy.log();
    assert!(
        !log.contains(&login.access) && !log.contains(PHANTOM),
        "{log}"
    );
    drop(proxy);

    // Start-up refusals are one line each: a key others can read, a key that is not the
    // certificate's, a certificate file with no certificate.
    install(&first);
    let start = |extra: &[&str]| {
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        env.cmd(&args)
            .env("TOKENKEEPER_CLIENT_TOKEN", PHANTOM)
            .stdin(format!("{}\n", login.access))
            .fails(1)
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    start(&tls_args).stderr_has("proxy-key.pem");
    std::fs::copy(&second.key, &key).unwrap();
    start(&tls_args).stderr_has("do not make a TLS identity");
    install(&first);
    std::fs::write(&cert, "").unwrap();
    start(&tls_args).stderr_has("holds no PEM certificate");
    env.cmd(&["proxy", "--tls-cert", cert.to_str().unwrap()])
        .run()
        .code(2)
        .stderr_has("--tls-key");
}

/// Waits up to 10 s for `done`.
fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting");
}

#[test]
fn named_clients_each_have_a_token_of_their_own_revocable_alone_and_the_log_names_them() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("named@example.com");
    let file = env.root.join("clients");
    let file_arg = file.to_str().unwrap();
    let add = |name: &str| {
        let out = env
            .cmd(&["proxy-clients", "--file", file_arg, "add", name])
            .ok();
        out.stderr_has("shown this once");
        out.stdout.trim().to_string()
    };
    let laptop = add("laptop");
    let ci = add("ci-runner-1");
    assert!(laptop.starts_with("tkc-") && laptop.len() > 40, "{laptop}");
    assert_ne!(laptop, ci);
    // The file holds names and hashes, never a token, and is the user's alone.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&laptop) && !text.contains(&ci), "{text}");
    assert!(text.contains("laptop sha256:"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    env.cmd(&["proxy-clients", "--file", file_arg, "add", "laptop"])
        .fails(2)
        .stderr_has("already has a client 'laptop'");
    env.cmd(&["proxy-clients", "--file", file_arg, "add", "bad/name"])
        .fails(2);
    let listed = env
        .cmd(&[
            "proxy-clients",
            "--file",
            file_arg,
            "list",
            "--format",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(listed["clients"], json!(["laptop", "ci-runner-1"]));

    let proxy = env
        .cmd(&[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
            "--clients",
            file_arg,
        ])
        .env("TARGET", &provider.url)
        .stdin(format!("{}\n", login.access))
        .serve();
    let send = |token: &str| {
        block_on(async {
            http()
                .post(proxy.url("/v1/messages"))
                .header("x-api-key", token)
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(send(&laptop), 200);
    assert_eq!(send(&ci), 200);
    assert_eq!(send("tkc-made-up"), 401);
    wait_for(|| {
        proxy
            .log()
            .contains("client=ci-runner-1 POST /v1/messages 200")
    });
    assert!(
        proxy.log().contains("client=laptop POST /v1/messages 200"),
        "{}",
        proxy.log()
    );

    // Revoking one leaves the other working.
    env.cmd(&["proxy-clients", "--file", file_arg, "remove", "laptop"])
        .ok();
    proxy.signal("HUP");
    wait_for(|| proxy.log().contains("clients file re-read: 1 clients"));
    assert_eq!(send(&laptop), 401);
    assert_eq!(send(&ci), 200);

    // A file that no longer parses changes nothing: a typo neither locks out nor lets in.
    let mut broken = std::fs::read_to_string(&file).unwrap();
    broken.push_str("oops sk-ant-pasted-a-token-by-mistake\n");
    std::fs::write(&file, &broken).unwrap();
    proxy.signal("HUP");
    wait_for(|| proxy.log().contains("still using what was loaded before"));
    assert_eq!(send(&ci), 200);
    assert_eq!(send(&laptop), 401);
    let log = proxy.log();
    for secret in [&laptop, &ci, &login.access, &"sk-ant-pasted".to_string()] {
        assert!(!log.contains(secret.as_str()), "{log}");
    }
    drop(proxy);

    // One way to admit clients at a time; a bad file stops the start with its line number.
    env.cmd(&["proxy", "--clients", file_arg, "--client-token", "x"])
        .run()
        .code(2)
        .stderr_has("cannot be used with");
    env.cmd(&["proxy", "--listen", "127.0.0.1:0", "--clients", file_arg])
        .stdin(format!("{}\n", login.access))
        .fails(1)
        .stderr_has("clients:2:");
}

/// A response read off a raw connection: status, headers (names in lower case), body.
type RawResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP/1.1 response with a `content-length` body from `reader`, or `None` at the
/// end of the stream.
fn read_response(reader: &mut impl std::io::BufRead) -> Option<RawResponse> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.get(9..12)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = header_of(&headers, "content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, headers, body))
}

#[test]
fn a_keep_alive_connection_carries_pipelined_and_late_requests_until_idle_or_told_to_close() {
    use std::io::BufReader;
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("keepalive@example.com");
    let proxy = stdin_proxy(
        &env,
        &login.access,
        &provider.url,
        &["--threads", "1", "--header-timeout", "2s"],
    );
    let stream = TcpStream::connect(&proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);

    // Three requests in one write: each is answered, in order, on the one connection.
    let health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let message = json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
    let post = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PHANTOM}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{message}",
        message.len()
    );
    writer
        .write_all(format!("{health}{post}{health}").as_bytes())
        .unwrap();
    let statuses: Vec<u16> = (0..3)
        .map(|_| read_response(&mut reader).expect("an answer").0)
        .collect();
    assert_eq!(statuses, [200, 200, 200]);

    // A body that arrives after its head, in two pieces with a pause between.
    let (head, body) = post.split_at(post.len() - message.len());
    writer.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(&body.as_bytes()[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(&body.as_bytes()[5..]).unwrap();
    let (status, _, answer) = read_response(&mut reader).expect("an answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));

    // Idle for less than the header timeout, then a request: the same connection serves it.
    std::thread::sleep(Duration::from_millis(1200));
    writer.write_all(health.as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader).expect("an answer").0, 200);

    // Idle past it: the proxy closes the connection.
    let started = std::time::Instant::now();
    assert!(read_response(&mut reader).is_none());
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(started.elapsed() < Duration::from_secs(8));

    // `Connection: close` is honoured: one answer, then the end of the stream.
    let stream = TcpStream::connect(&proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader).expect("an answer").0, 200);
    assert!(read_response(&mut reader).is_none());

    // Refused before its body was read: the rest of the body is never taken for a request.
    let stream = TcpStream::connect(&proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    writer
        .write_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .unwrap();
    assert_eq!(read_response(&mut reader).expect("an answer").0, 401);
    let _ = writer.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&rest)
    );

    // Every request above went through with the real token, which no log line holds.
    assert_eq!(provider.messages_calls(), 2);
    assert_eq!(provider.unauthorized_calls(), 0);
    assert!(!proxy.log().contains(&login.access));
}

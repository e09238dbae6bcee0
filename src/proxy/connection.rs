//! A plain-HTTP client connection's life, one exchange at a time.
//!
//! hyper gives every connection it serves an 8 KiB read buffer and an 8 KiB write buffer and
//! keeps both until the connection closes. Agents hold keep-alive connections open for minutes
//! between turns, and a crowd of them (or of clients that connect and say nothing) would cost
//! ~16 KiB each for nothing. So once a connection has been quiet for a second after its last
//! answer (the request read to its end), the socket is taken back from hyper, with any bytes
//! it had read ahead, and parked with nothing but the socket until the client sends again.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONNECTION;
use http::{Request, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::debug;

use super::Worker;
use super::body::ProxyBody;

/// How long a connection stays with hyper after its last answer before it is parked: long
/// enough that an agent's back-to-back requests never pay for the hand-over.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// Serves `stream` until the client closes it, stays idle past `idle`, or the proxy stops.
pub async fn serve(
    mut stream: TcpStream,
    builder: http1::Builder,
    worker: Arc<Worker>,
    idle: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let mut ahead = Bytes::new();
    loop {
        if ahead.is_empty() {
            tokio::select! {
                biased;
                _ = stopping.wait_for(|stop| *stop) => break,
                ready = tokio::time::timeout(idle, stream.readable()) => {
                    if !matches!(ready, Ok(Ok(()))) {
                        break;
                    }
                }
            }
        }
        let turn = Arc::new(Turn::default());
        let service = {
            let (worker, turn) = (worker.clone(), turn.clone());
            service_fn(move |request: Request<Incoming>| {
                turn.begin(&request);
                let request = request.map(|body| Received::tracked(body, turn.clone()));
                let (worker, turn) = (worker.clone(), turn.clone());
                Box::pin(async move {
                    let response = worker.handle(request).await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| Answered { body, turn }))
                })
            })
        };
        // Boxed: while the socket is parked, the task keeps a pointer's room for it, not its size.
        let mut connection =
            Box::new(builder.serve_connection(TokioIo::new(Rewind::new(stream, ahead)), service));
        let mut ending = false;
        let mut stopped = false;
        let served = {
            let mut stop = std::pin::pin!(stopping.wait_for(|stop| *stop));
            let mut quiet = std::pin::pin!(tokio::time::sleep(PARK_AFTER));
            let mut quiet_since = 0;
            poll_fn(|cx| {
                loop {
                    let polled = connection.poll_without_shutdown(cx);
                    if polled.is_ready() || ending {
                        return polled;
                    }
                    stopped = stop.as_mut().poll(cx).is_ready();
                    if !stopped {
                        // Quiet since the last answer: after a while, hyper hands the
                        // connection back (with any bytes of a next request it has read).
                        let answered = turn.answered.load(Ordering::Acquire);
                        if answered == 0 || turn.busy.load(Ordering::Acquire) {
                            return Poll::Pending;
                        }
                        if quiet_since != answered {
                            quiet_since = answered;
                            quiet
                                .as_mut()
                                .reset(tokio::time::Instant::now() + PARK_AFTER);
                        }
                        if quiet.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    ending = true;
                    Pin::new(&mut *connection).graceful_shutdown();
                }
            })
            .await
        };
        if let Err(err) = served {
            debug!(error = %crate::error::with_causes(&err), "connection ended with an error");
            return;
        }
        let parts = (*connection).into_parts();
        let (io, unread) = parts.io.into_inner().into_parts();
        stream = io;
        if !(ending && !stopped && turn.reusable()) {
            break;
        }
        ahead = join(parts.read_buf, unread);
    }
    let _ = stream.shutdown().await;
}

fn join(first: Bytes, then: Bytes) -> Bytes {
    match (first.is_empty(), then.is_empty()) {
        (_, true) => first,
        (true, false) => then,
        (false, false) => {
            let mut joined = BytesMut::with_capacity(first.len() + then.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&then);
            joined.freeze()
        }
    }
}

/// What the exchanges on one hyper connection tell whether the socket may carry more.
#[derive(Default)]
struct Turn {
    /// The latest request wants the connection kept open (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 asking for keep-alive).
    keep_alive: AtomicBool,
    /// The latest request's body was read to its end: nothing of it is left on the socket.
    request_ended: AtomicBool,
    /// A request is being answered.
    busy: AtomicBool,
    /// Responses handed to hyper in full (their bodies gone) so far.
    answered: AtomicU64,
}

impl Turn {
    fn begin(&self, request: &Request<Incoming>) {
        let asks = |token: &str| {
            request.headers().get_all(CONNECTION).iter().any(|value| {
                value.to_str().is_ok_and(|value| {
                    value
                        .split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case(token))
                })
            })
        };
        let keep_alive = match request.version() {
            Version::HTTP_11 => !asks("close"),
            Version::HTTP_10 => asks("keep-alive"),
            _ => false,
        };
        self.busy.store(true, Ordering::Release);
        self.keep_alive.store(keep_alive, Ordering::Release);
        self.request_ended
            .store(request.body().is_end_stream(), Ordering::Release);
    }

    fn reusable(&self) -> bool {
        self.keep_alive.load(Ordering::Acquire)
            && self.request_ended.load(Ordering::Acquire)
            && !self.busy.load(Ordering::Acquire)
            && self.answered.load(Ordering::Acquire) > 0
    }
}

/// A request body as the proxy receives it: hyper's, noting when it has been read to the end.
pub struct Received {
    inner: Incoming,
    turn: Option<Arc<Turn>>,
}

impl Received {
    fn tracked(inner: Incoming, turn: Arc<Turn>) -> Self {
        Self {
            inner,
            turn: Some(turn),
        }
    }

    /// A body whose end nobody needs to know about.
    pub fn untracked(inner: Incoming) -> Self {
        Self { inner, turn: None }
    }
}

impl Body for Received {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(turn) = &self.turn
            && (polled.is_none() || self.inner.is_end_stream())
        {
            turn.request_ended.store(true, Ordering::Release);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection when hyper is done with it. hyper drops a body
/// only after writing the response head, so taking the connection back at that point never
/// changes what the head says.
struct Answered {
    body: ProxyBody,
    turn: Arc<Turn>,
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.turn.busy.store(false, Ordering::Release);
        self.turn.answered.fetch_add(1, Ordering::AcqRel);
    }
}

impl Body for Answered {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket with bytes already read from it put back in front.
struct Rewind {
    ahead: Bytes,
    io: TcpStream,
}

impl Rewind {
    fn new(io: TcpStream, ahead: Bytes) -> Self {
        Self { ahead, io }
    }

    fn into_parts(self) -> (TcpStream, Bytes) {
        (self.io, self.ahead)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ahead.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.ahead.len().min(buf.remaining());
        buf.put_slice(&self.ahead[..n]);
        self.ahead.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

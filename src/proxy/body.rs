//! Body wrappers: bodies stream through untouched, and what must happen at the end of a stream
//! (the access log line, the open-streams gauge) or after it (resending a refused request) hangs
//! off these wrappers instead of buffering anything.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Method, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tracing::{info, warn};

use super::Worker;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends or answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// How much of a request body is kept for a resend after an upstream 401. Claude Code's
/// requests carry the whole conversation, typically well under this.
pub const REPLAY_LIMIT: usize = 16 << 20;

#[derive(Default)]
struct Recording {
    chunks: Vec<Bytes>,
    size: usize,
    complete: bool,
    too_large: bool,
}

/// A handle on what a `Recorded` body has passed on so far.
#[derive(Clone, Default)]
pub struct Replay(Arc<Mutex<Recording>>);

impl Replay {
    /// The whole body, if it went upstream completely and was small enough to keep.
    pub fn body(&self) -> Option<Bytes> {
        let recording = self.0.lock().expect("replay lock");
        if !recording.complete || recording.too_large {
            return None;
        }
        Some(match recording.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut joined = BytesMut::with_capacity(recording.size);
                many.iter()
                    .for_each(|chunk| joined.extend_from_slice(chunk));
                joined.freeze()
            }
        })
    }
}

/// Passes a request body through while keeping (reference-counted, not copied) the chunks it
/// passed, so the request can be sent again.
pub struct Recorded<B> {
    inner: B,
    replay: Replay,
}

impl<B> Recorded<B> {
    pub fn new(inner: B) -> (Self, Replay) {
        let replay = Replay::default();
        (
            Self {
                inner,
                replay: replay.clone(),
            },
            replay,
        )
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        let end = self.inner.is_end_stream();
        let mut recording = self.replay.0.lock().expect("replay lock");
        match &polled {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if !recording.too_large => {
                    recording.size += data.len();
                    if recording.size > REPLAY_LIMIT {
                        recording.too_large = true;
                        recording.chunks = Vec::new();
                    } else {
                        recording.chunks.push(data.clone());
                    }
                }
                Some(_) => {}
                // Trailers are not worth a resend path of their own.
                None => recording.too_large = true,
            },
            Some(Err(_)) => recording.too_large = true,
            None => recording.complete = true,
        }
        if end {
            recording.complete = true;
        }
        drop(recording);
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request as the access log and the metrics see it, reported when its response body is
/// done (sent in full, broken off, or abandoned by the client).
pub struct Exchange {
    /// The worker's own handle (not the shared metrics'), so its count stays on one thread.
    worker: Arc<Worker>,
    method: Method,
    /// The request's URI, shared rather than copied; only its path is logged.
    uri: Uri,
    status: u16,
    started: Instant,
    ended: Option<&'static str>,
    /// The named client that sent it.
    client: Option<Arc<str>>,
    /// The pool's slot that answered it.
    slot: Option<Arc<str>>,
}

impl Exchange {
    pub fn new(worker: Arc<Worker>, method: Method, uri: Uri, started: Instant) -> Self {
        Self {
            worker,
            method,
            uri,
            status: 0,
            started,
            ended: None,
            client: None,
            slot: None,
        }
    }

    /// Names the pool's slot in the log line.
    pub fn slot(&mut self, name: Arc<str>) {
        self.slot = Some(name);
    }

    /// Names the client in the log line.
    pub fn client(&mut self, name: Arc<str>) {
        self.client = Some(name);
    }

    /// Wraps the response body that ends this exchange.
    pub fn finish<B>(mut self, status: u16, body: B) -> ProxyBody
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.status = status;
        self.worker.proxy.metrics.answered(status);
        self.worker.proxy.metrics.stream_opened();
        boxed(Observed {
            inner: body,
            exchange: self,
        })
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.status == 0 {
            return;
        }
        self.worker.proxy.metrics.stream_closed();
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let (method, path, status) = (&self.method, self.uri.path(), self.status);
        let client = Tags(self.client.as_deref(), self.slot.as_deref());
        match self.ended {
            Some("complete") => info!("{client}{method} {path} {status} {ms:.1}ms"),
            Some(why) => warn!("{client}{method} {path} {status} {ms:.1}ms ({why})"),
            None => info!("{client}{method} {path} {status} {ms:.1}ms (client went away)"),
        }
    }
}

/// `client=NAME ` before a named client's log line and `slot=NAME ` before a pool's; nothing
/// otherwise.
struct Tags<'a>(Option<&'a str>, Option<&'a str>);

impl std::fmt::Display for Tags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(name) = self.0 {
            write!(f, "client={name} ")?;
        }
        match self.1 {
            Some(name) => write!(f, "slot={name} "),
            None => Ok(()),
        }
    }
}

struct Observed<B> {
    inner: B,
    exchange: Exchange,
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &polled {
            None => self.exchange.ended = Some("complete"),
            Some(Err(_)) => self.exchange.ended = Some("upstream broke off the body"),
            Some(Ok(_)) if self.inner.is_end_stream() => self.exchange.ended = Some("complete"),
            Some(Ok(_)) => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin + use<> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) -> usize
    where
        B::Error: std::fmt::Debug,
    {
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            n += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
        }
        n
    }

    #[tokio::test]
    async fn a_body_sent_in_full_can_be_replayed() {
        let (recorded, replay) = Recorded::new(chunks(&["hello ", "big ", "world"]));
        assert_eq!(replay.body(), None, "nothing sent yet");
        assert_eq!(drain(recorded).await, 15);
        assert_eq!(
            replay.body().unwrap(),
            Bytes::from_static(b"hello big world")
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_is_not_replayed() {
        let (mut recorded, replay) = Recorded::new(chunks(&["part one", "part two"]));
        recorded.frame().await.unwrap().unwrap();
        assert_eq!(replay.body(), None);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_not_kept() {
        let big: &'static str = Box::leak("x".repeat(REPLAY_LIMIT).into_boxed_str());
        let (recorded, replay) = Recorded::new(chunks(&[big, "y"]));
        assert_eq!(drain(recorded).await, REPLAY_LIMIT + 1);
        assert_eq!(replay.body(), None);
    }
}

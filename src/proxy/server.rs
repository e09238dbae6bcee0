//! Thread per core, as nginx runs worker processes: one acceptor hands connections round-robin
//! to worker threads, each with its own single-threaded runtime and its own upstream pool. A
//! request, its upstream exchange and the tasks driving both stay on one thread, so nothing is
//! stolen or woken across cores.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{Proxy, Worker, connection};
use crate::error::{Error, Result};

/// Connections waiting to be accepted; bursts of agents starting at once must not be dropped.
const BACKLOG: i32 = 4096;

/// A listening socket for `addr`.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A proxy serving on its threads.
pub struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish (up to the grace period), and returns
    /// when every thread is done.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
        info!("stopped");
    }
}

/// Starts serving `listener` on `threads` worker threads.
pub fn start(
    proxy: Arc<Proxy>,
    listener: std::net::TcpListener,
    threads: usize,
    grace: Duration,
) -> Result<Running> {
    let addr = listener
        .local_addr()
        .map_err(|err| Error::failure(format!("cannot read the listening address: {err}")))?;
    let (stop, stopped) = watch::channel(false);
    let limits = proxy.settings.limits;
    let open = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    for n in 0..threads.max(1) {
        let (hand, take) = mpsc::unbounded_channel();
        workers.push(hand);
        let worker = Worker::new(proxy.clone())?;
        let open = open.clone();
        handles.push(thread(format!("proxy-worker-{n}"), move || {
            serve(worker, take, grace, limits, open)
        })?);
    }
    handles.push(thread("proxy-accept".into(), move || {
        accept(listener, workers, stopped, limits, open)
    })?);
    Ok(Running {
        addr,
        stop,
        threads: handles,
    })
}

/// A thread running `task` to completion on its own single-threaded runtime.
fn thread<F, Fut>(name: String, task: F) -> Result<JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::logging::flush)
        .build()
        .map_err(|err| Error::failure(format!("cannot start the proxy's runtime: {err}")))?;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            crate::logging::batch();
            runtime.block_on(task());
            crate::logging::flush();
        })
        .map_err(|err| Error::failure(format!("cannot start a proxy thread: {err}")))
}

/// What a connection past the cap is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 45\r\nconnection: close\r\nx-tokenkeeper-error: connection-limit\r\n\r\ntokenkeeper proxy: too many open connections\n";

async fn accept(
    listener: std::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    mut stopped: watch::Receiver<bool>,
    limits: super::Limits,
    open: Arc<AtomicUsize>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => return warn!(error = %err, "cannot listen"),
    };
    let mut next = 0;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            // Told why, then closed: holding it would only add to the load.
            warn!(
                limit = limits.max_connections,
                "connection limit reached; refusing a connection"
            );
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        if let Ok(stream) = stream.into_std() {
            let _ = workers[next % workers.len()].send(stream);
            next += 1;
        }
    }
    // Dropping the listener closes the port; dropping the senders tells the workers to finish.
}

/// Counts a connection as closed when dropped, whichever way it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(
    worker: Worker,
    mut incoming: mpsc::UnboundedReceiver<std::net::TcpStream>,
    grace: Duration,
    limits: super::Limits,
    open: Arc<AtomicUsize>,
) {
    let worker = Arc::new(worker);
    let tls = worker.proxy.listener_tls();
    let sweeper = worker.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(sweeper.upstream.sweep_interval());
        loop {
            every.tick().await;
            sweeper.upstream.sweep();
        }
    });
    // HTTP/1.1 only: agents speak it to a plain-http base URL, and skipping the sniffing for an
    // HTTP/2 preface saves work on every request. The timer bounds how long a request's head
    // may take and how long a keep-alive connection may sit idle: a client that opens
    // connections and sends nothing must not hold them (and their buffers) forever.
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // Head and body copied into one buffer: for the small messages most requests are, cheaper
    // in the kernel than a vectored write.
    builder.writev(false);
    // Every connection holds a receiver: the worker tells them all to finish through it, and
    // knows they have when none is left.
    let (stop, stopping) = watch::channel(false);
    while let Some(stream) = incoming.recv().await {
        let counted = Open(open.clone());
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        let (worker, builder, mut stopping) = (worker.clone(), builder.clone(), stopping.clone());
        let Some(tls) = &tls else {
            tokio::spawn(async move {
                let _counted = counted;
                connection::serve(stream, builder, worker, limits.header_timeout, stopping).await;
            });
            continue;
        };
        // The handshake counts as part of the request head: it too must come in time.
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            let _counted = counted;
            let stream =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => return debug!(error = %err, "TLS handshake failed"),
                    Err(_) => return debug!("TLS handshake did not finish in time"),
                };
            let service = service_fn(move |request: Request<Incoming>| {
                worker
                    .clone()
                    .handle(request.map(connection::Received::untracked))
            });
            let mut served =
                std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let ended = tokio::select! {
                ended = served.as_mut() => ended,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(err) = ended {
                debug!(error = %crate::error::with_causes(&err), "connection ended with an error");
            }
        });
    }
    drop(stopping);
    let _ = stop.send(true);
    let open = stop.receiver_count();
    if open > 0 {
        info!(
            open,
            "letting open connections finish (up to {}s)",
            grace.as_secs()
        );
    }
    tokio::select! {
        () = stop.closed() => {}
        () = tokio::time::sleep(grace) => warn!("grace period over; closing the streams still open"),
    }
}

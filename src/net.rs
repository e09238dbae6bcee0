//! The network context: one tokio runtime per process, built on first use so commands that
//! never touch the network (most of them, most of the time) pay nothing. Each agent's provider
//! client lives with its agent.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        // Multi-threaded so that several threads can each block on a request at once.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Runs a future to completion from synchronous code.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// Makes ring rustls's process-wide crypto provider, which reqwest's clients need. Installing
/// twice is harmless; the first provider wins.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

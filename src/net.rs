//! The network context: one tokio runtime and one provider client per process, built on first
//! use so commands that never touch the network (most of them, most of the time) pay nothing.

use std::future::Future;
use std::sync::OnceLock;

use crate::agent::claude::provider::Client;

struct Net {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

static NET: OnceLock<Net> = OnceLock::new();

fn net() -> &'static Net {
    NET.get_or_init(|| Net {
        // Multi-threaded so that several threads can each block on a request at once.
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime starts"),
        client: Client::from_env(),
    })
}

/// The provider client, configured from the environment.
pub fn client() -> &'static Client {
    &net().client
}

/// Runs a future to completion from synchronous code.
pub fn block_on<F: Future>(future: F) -> F::Output {
    net().runtime.block_on(future)
}

/// Makes ring rustls's process-wide crypto provider, which reqwest's clients need. Installing
/// twice is harmless; the first provider wins.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

//! Runs the test suite's fake Anthropic provider on its own, for manual tries:
//!   cargo run --example fake_provider
//! It prints the environment to point tokenkeeper at it and one fresh login's credential.

#[path = "../tests/support/provider.rs"]
mod provider;

fn main() {
    let provider = provider::FakeProvider::start();
    for (key, value) in provider.env() {
        println!("export {key}={value}");
    }
    let login = provider.issue("you@example.com");
    println!("# a credential for `tokenkeeper add NAME --from stdin`:");
    println!("{}", provider::FakeProvider::blob(&login));
    loop {
        std::thread::park();
    }
}

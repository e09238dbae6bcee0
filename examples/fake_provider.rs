//! Runs the test suite's fake Anthropic provider on its own, for manual tries and benchmarks:
//!   cargo run --example fake_provider [-- --latency-ms N --access-lifetime-s N --logins N --logins-dir DIR]
//! It prints the environment to point tokenkeeper at it, then serves until killed. One fresh
//! login's credential is printed too, or with `--logins N` that many are written to
//! `DIR/login-<i>.json` for `tokenkeeper add NAME --from file …`.

#[path = "../tests/support/lineage.rs"]
mod lineage;
#[path = "../tests/support/provider.rs"]
mod provider;

use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let provider = provider::FakeProvider::start();
    if let Some(ms) = option("--latency-ms") {
        provider.set_latency(Duration::from_millis(ms.parse().expect("--latency-ms N")));
    }
    if let Some(secs) = option("--access-lifetime-s") {
        provider.set_access_lifetime(Duration::from_secs(
            secs.parse().expect("--access-lifetime-s N"),
        ));
    }
    for (key, value) in provider.env() {
        println!("export {key}={value}");
    }
    match option("--logins") {
        Some(count) => {
            let dir = std::path::PathBuf::from(option("--logins-dir").expect("--logins-dir DIR"));
            for i in 0..count.parse::<usize>().expect("--logins N") {
                let login = provider.issue(&format!("user{i}@example.com"));
                let path = dir.join(format!("login-{i}.json"));
                std::fs::write(&path, provider::FakeProvider::blob(&login)).expect("writable");
            }
            println!("# wrote {count} logins to {}", dir.display());
        }
        None => {
            let login = provider.issue("you@example.com");
            println!("# a credential for `tokenkeeper add NAME --from stdin`:");
            println!("{}", provider::FakeProvider::blob(&login));
        }
    }
    println!("# ready");
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}

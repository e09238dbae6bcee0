//! Crash safety: `use` and `add` killed with SIGKILL at random moments, and at each durable
//! step by failpoint, never leave a half-written file or lose the newest credential.

use std::time::{Duration, Instant};

use crate::support::*;

const TRIALS: usize = 200;

/// xorshift64*: enough randomness for kill timing, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = now_ms() as u64 | 1;
        eprintln!("crash test seed: {seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Every file tokenkeeper owns or writes parses as JSON; temporary files are ignored.
fn assert_files_whole(env: &Env) {
    for (path, (bytes, mode)) in env.snapshot() {
        let name = path.rsplit('/').next().unwrap();
        if name.starts_with(".tokenkeeper-") || name == ".claude.json" {
            continue;
        }
        if path.contains("/store/") || name == "slots.json" || name == ".credentials.json" {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "half-written file {path}\n{}",
                env.listing()
            );
            assert_eq!(mode & 0o077, 0, "{path} has mode {mode:o}");
        }
    }
}

/// Stored secrets, without the temporary files a killed write may leave behind.
fn stored(env: &Env) -> String {
    env.snapshot()
        .into_iter()
        .filter(|(path, _)| {
            path.contains("/store/")
                && !path
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .starts_with(".tokenkeeper-")
        })
        .map(|(_, (bytes, _))| String::from_utf8(bytes).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Median wall time of a command, to spread kills over its whole run.
fn typical_duration(mut run: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

fn kill_after(env: &Env, args: &[&str], stdin: Option<&str>, delay: Duration) {
    let mut run = env.cmd(args);
    if let Some(input) = stdin {
        run = run.stdin(input);
    }
    let mut child = run.spawn();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn use_killed_at_random_never_loses_the_newest_tokens() {
    let env = Env::new();
    env.add_fresh("a");
    env.add_fresh("b");
    env.cmd(&["use", "a"]).ok();
    let span = typical_duration(|| {
        env.cmd(&["use", "b"]).ok();
        env.cmd(&["use", "a"]).ok();
    }) / 2;
    let mut rng = Rng::new();
    let mut current = "a";
    for trial in 0..TRIALS {
        let target = if current == "a" { "b" } else { "a" };
        // Claude Code changed the live file since tokenkeeper wrote it: mostly the same lineage
        // with a new access token, sometimes a lineage no slot knows (a refresh or new login).
        let tag = format!("t{trial}");
        let newest = if trial % 10 == 9 {
            fresh_blob(&tag)
        } else {
            let refresh_token = env.refresh_token_of(current);
            claude_blob(&access(&tag), &refresh_token, now_ms() + 8 * 3_600_000)
        };
        env.write_live(&newest);
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 * 3 / 2));
        kill_after(&env, &["use", target], None, delay);

        assert_files_whole(&env);
        let in_live = env
            .read_live()
            .is_some_and(|live| live.contains(&access(&tag)));
        assert!(
            in_live || stored(&env).contains(&access(&tag)),
            "trial {trial}: newest token lost\n{}",
            env.listing()
        );
        // The next command finishes the job: the newest tokens end up in a slot.
        env.cmd(&["use", target]).ok();
        assert!(
            stored(&env).contains(&access(&tag)),
            "trial {trial}: newest token not saved\n{}",
            env.listing()
        );
        assert_files_whole(&env);
        current = target;
    }
}

#[test]
fn add_killed_at_random_leaves_all_or_nothing() {
    let env = Env::new();
    env.add_fresh("base");
    let mut n = 0;
    let span = typical_duration(|| {
        n += 1;
        env.cmd(&["add", &format!("warm{n}"), "--from", "stdin"])
            .stdin(fresh_blob(&format!("warm{n}")))
            .ok();
    });
    let mut rng = Rng::new();
    for trial in 0..TRIALS {
        let name = format!("n{trial}");
        let blob = fresh_blob(&name);
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 * 3 / 2));
        kill_after(&env, &["add", &name, "--from", "stdin"], Some(&blob), delay);
        assert_files_whole(&env);
        let list = env.cmd(&["list", "--format", "json"]).ok().json();
        let present = list
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == name.as_str());
        if present {
            // The catalog names it, so its credential must be there in full.
            env.cmd(&["get", &name])
                .ok()
                .stdout_is(&format!("{}\n", access(&name)));
        }
        // Running it again completes it, as an update if the killed run got that far.
        let again = env
            .cmd(&["add", &name, "--from", "stdin"])
            .stdin(&blob)
            .ok();
        again.stdout_has(if present { "updated" } else { "added" });
        env.cmd(&["get", &name])
            .ok()
            .stdout_is(&format!("{}\n", access(&name)));
    }
}

#[test]
fn every_failpoint_of_use_is_recoverable() {
    for point in [
        "write:before-rename",
        "sync:before-catalog",
        "use:before-live-write",
        "use:after-live-write",
    ] {
        let env = Env::new();
        env.add_fresh("a");
        env.add_fresh("b");
        env.cmd(&["use", "a"]).ok();
        let newest = fresh_blob("newest");
        env.write_live(&newest);
        let out = env
            .cmd(&["use", "b"])
            .env("TOKENKEEPER_FAILPOINT", point)
            .run();
        assert_ne!(out.code, 0, "failpoint {point} did not fire");
        assert_files_whole(&env);
        env.cmd(&["use", "b"]).ok();
        assert!(
            stored(&env).contains(&access("newest")),
            "{point}: newest token lost\n{}",
            env.listing()
        );
        env.cmd(&["get", "b"])
            .ok()
            .stdout_is(&format!("{}\n", access("b")));
        assert!(env.read_live().unwrap().contains(&access("b")));
    }
}

#[test]
fn every_failpoint_of_add_and_remove_is_recoverable() {
    for point in ["write:before-rename", "add:before-catalog"] {
        let env = Env::new();
        let blob = fresh_blob("x");
        let out = env
            .cmd(&["add", "x", "--from", "stdin"])
            .stdin(&blob)
            .env("TOKENKEEPER_FAILPOINT", point)
            .run();
        assert_ne!(out.code, 0, "failpoint {point} did not fire");
        assert_files_whole(&env);
        env.cmd(&["add", "x", "--from", "stdin"])
            .stdin(&blob)
            .ok()
            .stdout_has("added");
        env.cmd(&["get", "x"])
            .ok()
            .stdout_is(&format!("{}\n", access("x")));
    }
    let env = Env::new();
    env.write_live(&fresh_blob("r"));
    env.cmd(&["add", "r"]).ok();
    let out = env
        .cmd(&["remove", "r", "--yes"])
        .env("TOKENKEEPER_FAILPOINT", "remove:after-catalog")
        .run();
    assert_ne!(out.code, 0);
    // The catalog no longer names it; the live file is still there, unmanaged, and intact.
    assert_eq!(
        env.cmd(&["list", "--format", "json"]).ok().json(),
        serde_json::json!([])
    );
    assert!(env.read_live().unwrap().contains(&access("r")));
}

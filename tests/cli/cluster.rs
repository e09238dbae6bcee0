//! Installs on several machines sharing one highly available OpenBao: a real three-node Raft
//! cluster on loopback, whose standbys serve reads from their own (lagging) copy.

use std::time::{Duration, Instant};

use crate::support::openbao::OpenBaoCluster;
use crate::support::provider::{Failure, FakeProvider};
use crate::support::*;

/// An install that knows every node of `cluster`, listed starting from node `first`.
fn install(provider: &FakeProvider, cluster: &OpenBaoCluster, first: usize) -> Env {
    let mut env = Env::with_provider(provider);
    let mut addresses = cluster.addresses();
    addresses.rotate_left(first);
    env.set("BAO_ADDR", addresses.join(","));
    env.set("BAO_TOKEN", &cluster.token);
    env.set("TOKENKEEPER_BACKEND", "openbao");
    env
}

#[test]
fn installs_on_a_raft_cluster_refresh_once_per_cycle_while_the_leader_is_killed() {
    let mut cluster = OpenBaoCluster::start(3);
    let provider = FakeProvider::start();
    // Each install lists a different node first: two of them start on a standby.
    let installs: Vec<Env> = (0..3).map(|n| install(&provider, &cluster, n)).collect();
    let login = provider.issue_expired("cluster@example.com");
    installs[0].add_login("team", &login);
    for other in &installs[1..] {
        other.cmd(&["list", "--no-usage"]).ok();
        std::fs::copy(
            installs[0].data_dir().join("slots.json"),
            other.data_dir().join("slots.json"),
        )
        .unwrap();
    }
    // Right after a write, every install reads the new value, whichever node it asks first.
    for env in &installs {
        assert_eq!(env.refresh_token_of("team"), login.refresh);
    }

    for round in 0..3 {
        if round > 0 {
            provider.set_access_lifetime(Duration::from_secs(1));
            installs[0].cmd(&["refresh", "team", "--force"]).ok();
            provider.set_access_lifetime(Duration::from_secs(8 * 3600));
            std::thread::sleep(Duration::from_millis(1100));
        }
        let served = provider.refreshes_served();
        // The refresh that wins is slow at the provider; in round 1 the leader dies meanwhile,
        // with a lease held and the new tokens not yet written.
        provider.fail_next(1, Failure::Slow(Duration::from_millis(1500)));
        let started = Instant::now();
        let running: Vec<_> = installs
            .iter()
            .map(|env| env.cmd(&["refresh", "team", "-v"]).spawn_piped())
            .collect();
        if round == 1 {
            std::thread::sleep(Duration::from_millis(700));
            let leader = cluster.leader();
            cluster.kill(&leader);
        }
        let outputs: Vec<_> = running.into_iter().map(|child| finish(child, 90)).collect();
        let took = started.elapsed();
        let all: Vec<String> = outputs
            .iter()
            .map(|o| {
                format!(
                    "exit {:?}\n{}{}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .collect();
        for out in &outputs {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "round {round}:\n{}",
                all.join("\n----\n")
            );
            assert!(!stderr.contains(&login.refresh), "{stderr}");
        }
        assert!(
            took < Duration::from_secs(60),
            "round {round}: the refreshes took {took:?}"
        );
        assert_eq!(
            provider.refreshes_served(),
            served + 1,
            "round {round}: exactly one refresh per due cycle"
        );
        if round == 1 {
            assert!(
                all.iter()
                    .any(|o| o.contains("openbao: trying another server")),
                "the leader's death was noticed and another node served: {}",
                all.join("\n----\n")
            );
        }
        let current = installs[0].refresh_token_of("team");
        assert!(provider.is_current(&current), "round {round}");
        assert!(!provider.family_revoked(&current), "round {round}");
        for env in &installs {
            assert_eq!(
                env.refresh_token_of("team"),
                current,
                "round {round}: every install ends with the current token"
            );
            assert_eq!(
                env.access_token_of("team"),
                installs[0].access_token_of("team")
            );
        }
    }
}

#[test]
fn installs_pointed_at_a_lagging_standby_read_their_own_writes_and_release_the_lease() {
    let cluster = OpenBaoCluster::start(3);
    let provider = FakeProvider::start();
    let leader = cluster.leader();
    let standby = cluster
        .addresses()
        .into_iter()
        .find(|address| *address != leader)
        .unwrap();
    // One address only, a standby: writes are forwarded to the leader, reads are answered
    // from the standby's own copy unless told to be current.
    let mut env = Env::with_provider(&provider);
    env.set("BAO_ADDR", &standby);
    env.set("BAO_TOKEN", &cluster.token);
    env.set("TOKENKEEPER_BACKEND", "openbao");
    let login = provider.issue_expired("standby@example.com");
    // `add` writes and reads back at once: the read-back must see the write.
    env.add_login("team", &login);

    let started = Instant::now();
    let running: Vec<_> = (0..30)
        .map(|_| env.cmd(&["get", "team", "-vv"]).spawn_piped())
        .collect();
    let outputs: Vec<_> = running.into_iter().map(|child| finish(child, 90)).collect();
    let took = started.elapsed();
    let all: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .collect();
    let tokens: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|out| {
            assert!(out.status.success(), "{}", all.join("\n----\n"));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(provider.refreshes_served(), 1, "one refresh for 30 gets");
    assert_eq!(
        tokens.len(),
        1,
        "every get printed the new token: {tokens:?}"
    );
    assert_ne!(tokens.first().unwrap(), &login.access);
    assert!(
        took < Duration::from_secs(45),
        "30 concurrent gets took {took:?}: a lease was not released"
    );
    assert!(provider.is_current(&env.refresh_token_of("team")));
}

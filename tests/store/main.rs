//! One conformance suite every secret-store backend passes, run against each backend through
//! the library's `SecretStore` trait.

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;

use tokenkeeper::secret::Secret;
use tokenkeeper::store::{
    FileStore, KeychainStore, OnePasswordStore, OpenBaoConfig, OpenBaoStore, SecretKey,
    SecretServiceStore, SecretStore,
};

use support::keychain::{FakeKeychain, FakeOnePassword};
use support::openbao::OpenBao;

fn key(service: &str, account: &str) -> SecretKey {
    SecretKey {
        service: service.into(),
        account: account.into(),
    }
}

fn value(text: &str) -> Secret {
    Secret::new(text.to_string())
}

fn read(store: &dyn SecretStore, key: &SecretKey) -> Option<String> {
    store
        .get(key)
        .unwrap()
        .map(|secret| secret.expose_secret().to_string())
}

/// What every backend must do.
fn conformance(store: Arc<dyn SecretStore + Send + Sync>) {
    let slot = SecretKey::slot("claude", "0123abcd");

    // Absent keys.
    assert_eq!(read(&*store, &slot), None, "{}: absent", store.name());
    assert!(
        !store.delete(&slot).unwrap(),
        "{}: delete absent",
        store.name()
    );

    // Put, get, overwrite.
    store
        .put(&slot, &value(r#"{"claudeAiOauth":{"accessToken":"one"}}"#))
        .unwrap();
    assert_eq!(
        read(&*store, &slot).as_deref(),
        Some(r#"{"claudeAiOauth":{"accessToken":"one"}}"#)
    );
    store
        .put(&slot, &value(r#"{"claudeAiOauth":{"accessToken":"two"}}"#))
        .unwrap();
    assert_eq!(
        read(&*store, &slot).as_deref(),
        Some(r#"{"claudeAiOauth":{"accessToken":"two"}}"#)
    );

    // Keys are distinct, names with spaces (Claude Code's own item) work.
    let live = key("Claude Code-credentials", "jane doe");
    let ralph = SecretKey::ralph("claude");
    store.put(&live, &value(r#"{"live":true}"#)).unwrap();
    store.put(&ralph, &value(r#"{"accessToken":"r"}"#)).unwrap();
    assert_eq!(read(&*store, &live).as_deref(), Some(r#"{"live":true}"#));
    assert_eq!(
        read(&*store, &ralph).as_deref(),
        Some(r#"{"accessToken":"r"}"#)
    );
    assert_eq!(
        read(&*store, &slot).as_deref(),
        Some(r#"{"claudeAiOauth":{"accessToken":"two"}}"#)
    );

    // Unicode, and a value far larger than any credential (Claude's mcpOAuth section grows).
    let unicode = r#"{"name":"Jürgen ✓ 日本語","emoji":"🔑"}"#;
    store.put(&slot, &value(unicode)).unwrap();
    assert_eq!(read(&*store, &slot).as_deref(), Some(unicode));
    let large = format!(r#"{{"mcpOAuth":"{}"}}"#, "x".repeat(64 << 10));
    store.put(&slot, &value(&large)).unwrap();
    assert_eq!(read(&*store, &slot).as_deref(), Some(large.as_str()));

    // Delete.
    assert!(store.delete(&slot).unwrap());
    assert_eq!(read(&*store, &slot), None);
    assert!(!store.delete(&slot).unwrap());

    // Concurrent writers: every write lands whole; the last one wins, never a mix.
    let shared = key("tokenkeeper", "claude.shared");
    let writers: Vec<_> = (0..6)
        .map(|n| {
            let store = store.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                for round in 0..4 {
                    let text = format!(
                        r#"{{"writer":{n},"round":{round},"pad":"{}"}}"#,
                        "p".repeat(4096)
                    );
                    store.put(&shared, &value(&text)).unwrap();
                    store
                        .put(
                            &key("tokenkeeper", &format!("claude.own{n}")),
                            &value(&text),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let last = read(&*store, &shared).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&last).expect("a whole value");
    assert_eq!(
        parsed["round"],
        3,
        "{}: a writer's last round",
        store.name()
    );
    for n in 0..6 {
        let own = read(&*store, &key("tokenkeeper", &format!("claude.own{n}"))).unwrap();
        assert!(
            own.starts_with(&format!(r#"{{"writer":{n},"round":3,"#)),
            "{own}"
        );
    }
}

/// A fake tool's log of its command lines shows it was used (`used`) and holds none of the
/// values `conformance` stores.
fn assert_no_value_in_argv(argv: &str, used: &str) {
    assert!(argv.contains(used), "{argv}");
    for planted in ["accessToken", "Jürgen", "mcpOAuth", "writer"] {
        assert!(!argv.contains(planted), "a value in argv: {planted}");
    }
}

#[test]
fn the_file_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(FileStore::new(dir.path().join("store"))));
}

#[test]
fn the_keychain_backend_conforms_and_never_puts_a_secret_in_argv() {
    let fake = FakeKeychain::install();
    conformance(Arc::new(KeychainStore::new(fake.program())));
    assert_eq!(fake.violations(), "");
    assert_no_value_in_argv(&fake.argv_log(), "find-generic-password");
}

#[test]
fn the_keychain_backend_reports_a_locked_keychain_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKeychain::install();
    // A wrapper that runs the fake with the keychain locked.
    let locked = dir.path().join("locked-security");
    std::fs::write(
        &locked,
        format!(
            "#!/bin/sh\nFAKE_KEYCHAIN_LOCKED=1 exec '{}' \"$@\"\n",
            fake.program().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&locked)
        .status()
        .unwrap();
    let store = KeychainStore::new(locked);
    let err = store.get(&SecretKey::ralph("claude")).unwrap_err();
    assert!(
        err.message().contains("the Keychain is locked"),
        "{}",
        err.message()
    );
    assert!(
        err.hint()
            .unwrap()
            .contains("set-generic-password-partition-list")
    );
    let err = store
        .put(&SecretKey::ralph("claude"), &value("{}"))
        .unwrap_err();
    assert!(
        err.message().starts_with("keychain: cannot"),
        "{}",
        err.message()
    );
}

#[test]
fn the_secret_service_backend_conforms_against_gnome_keyring() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the tests through scripts/test (or scripts/with-keyring cargo test)"
    );
    conformance(Arc::new(SecretServiceStore::default()));
}

#[test]
fn the_openbao_backend_conforms_against_a_dev_server() {
    let bao = OpenBao::start();
    conformance(Arc::new(OpenBaoStore::new(OpenBaoConfig {
        addresses: vec![bao.address.clone()],
        token: Secret::new(bao.token.clone()),
        mount: "secret".into(),
        prefix: "team/tokenkeeper".into(),
        ca_cert: None,
    })));
}

#[test]
fn the_1password_backend_conforms_and_never_puts_a_secret_in_argv() {
    let fake = FakeOnePassword::install();
    conformance(Arc::new(OnePasswordStore::new(fake.program())));
    assert_eq!(fake.violations(), "");
    assert_no_value_in_argv(&fake.argv_log(), "\"read\"");
}

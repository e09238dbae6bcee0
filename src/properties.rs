//! Property tests of the parsers: whatever bytes, JSON and dates reach them — a hand-edited
//! file, a provider that misbehaves, a newer Claude Code — none panics, and a credential parsed
//! and written back keeps every byte of the fields tokenkeeper does not know.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::agent::Credential;
use crate::agent::provider;
use crate::catalog::Catalog;
use crate::journal::Entry;
use crate::refresh::{Policy, due};
use crate::secret::Secret;
use crate::usage::Snapshot;

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        numeric_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Object keys, mostly the ones the parsers look for.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "claudeAiOauth",
            "accessToken",
            "refreshToken",
            "expiresAt",
            "refreshTokenExpiresAt",
            "scopes",
            "subscriptionType",
            "rateLimitTier",
            "access_token",
            "refresh_token",
            "expires_in",
            "scope",
            "account",
            "uuid",
            "five_hour",
            "seven_day",
            "utilization",
            "resets_at",
            "limits",
            "percent",
            "kind",
            "slots",
            "version",
            "updated_at",
            "created_at",
            "credential",
            "base",
            "answer",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z_]{0,10}",
    ]
}

/// Strings that look like numbers or dates, at and past the ends of every range.
fn numeric_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<timestamp_secs::Secs>().prop_map(|s| s.rfc3339()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("-009999-01-01T00:00:00Z".to_string()),
        Just("1e308".to_string()),
    ]
}

/// Any instant jiff can hold, the ends included.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        Just(Timestamp::MIN),
        Just(Timestamp::MAX),
        (Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())
            .prop_map(|s| Timestamp::from_second(s).expect("in range")),
    ]
}

fn duration() -> impl Strategy<Value = SignedDuration> {
    prop_oneof![
        Just(SignedDuration::MAX),
        Just(SignedDuration::MIN),
        any::<i64>().prop_map(SignedDuration::from_secs),
    ]
}

mod timestamp_secs {
    use proptest::prelude::*;

    /// Seconds in jiff's range, as a date string.
    #[derive(Debug, Clone, Copy)]
    pub struct Secs(pub i64);

    impl Secs {
        pub fn rfc3339(self) -> String {
            jiff::Timestamp::from_second(self.0)
                .map(|t| t.to_string())
                .unwrap_or_default()
        }
    }

    impl Arbitrary for Secs {
        type Parameters = ();
        type Strategy = BoxedStrategy<Self>;
        fn arbitrary_with(_: ()) -> Self::Strategy {
            (jiff::Timestamp::MIN.as_second()..=jiff::Timestamp::MAX.as_second())
                .prop_map(Secs)
                .boxed()
        }
    }
}

/// Reads everything a caller may read of a credential.
fn exercise(credential: &Credential, now: Timestamp) {
    let _ = (
        credential.expires_at(),
        credential.refresh_expires_at(),
        credential.scopes(),
        credential.kind(),
        credential.is_claude_blob(),
        credential.subscription_type(),
        credential.rate_limit_tier(),
        format!("{credential:?}"),
    );
    let _ = credential.without_refresh_token().to_secret_json();
    let _ = due(
        credential.expires_at(),
        credential.refresh_expires_at(),
        now,
        now,
        &Policy::default(),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn credentials_from_any_bytes_or_json_never_panic(bytes in any::<Vec<u8>>(), value in json()) {
        let now = Timestamp::now();
        for input in [bytes, value.to_string().into_bytes()] {
            if let Ok(credential) = Credential::parse(&input, "input") {
                exercise(&credential, now);
            }
            let _ = Credential::parse_input(&input, "input");
            let text = String::from_utf8_lossy(&input).into_owned();
            if let Ok((credential, _)) = Credential::from_input(&Secret::new(text), "stdin", now) {
                exercise(&credential, now);
            }
        }
    }

    #[test]
    fn unknown_fields_survive_parse_and_write_byte_for_byte(
        outer in prop::collection::vec(("x[a-z]{0,6}", json()), 0..4),
        inner in prop::collection::vec(("y[a-z]{0,6}", json()), 0..4),
        expires_ms in 100_000_000_000i64..253_402_207_200_000,
    ) {
        let mut oauth = Map::new();
        oauth.insert("accessToken".into(), Value::from("sk-ant-oat01-a"));
        oauth.insert("refreshToken".into(), Value::from("sk-ant-ort01-r"));
        oauth.insert("expiresAt".into(), Value::from(expires_ms));
        oauth.extend(inner);
        let mut doc = Map::new();
        doc.insert("claudeAiOauth".into(), Value::Object(oauth));
        doc.extend(outer);
        let text = Value::Object(doc).to_string();
        let credential = Credential::parse(text.as_bytes(), "blob").unwrap();
        let written = credential.to_secret_json();
        prop_assert_eq!(written.expose_secret(), text.as_str());
    }

    #[test]
    fn provider_answers_never_panic_whatever_they_say(
        value in json(),
        expires_in in prop_oneof![any::<i64>().prop_map(Value::from), json()],
        at in timestamp(),
    ) {
        let mut answer = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        answer.insert("access_token".into(), Value::from("sk-ant-oat01-new"));
        answer.insert("expires_in".into(), expires_in);
        for raw in [Value::Object(answer).to_string(), "not json".to_string()] {
            if let Ok(tokens) = provider::interpret(&Secret::new(raw)) {
                let _ = provider::expires_at(&tokens, at);
                let mut credential = Credential::parse(
                    br#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r"}}"#,
                    "base",
                )
                .unwrap();
                credential.apply_refresh(&tokens, at);
                exercise(&credential, at);
            }
        }
    }

    #[test]
    fn journal_entries_from_any_json_never_panic(value in json(), answer in json(), at in timestamp()) {
        let _ = serde_json::from_value::<Entry>(value);
        let base = Credential::parse(
            br#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1784443682444}}"#,
            "base",
        )
        .unwrap();
        let entry = Entry::refreshed("claude", "id", &base, Secret::new(answer.to_string()), None, at);
        if let Ok(resolved) = entry.resolve() {
            exercise(&resolved.credential, at);
        }
    }

    #[test]
    fn editing_one_member_changes_that_member_only(
        members in prop::collection::vec((key(), json()), 0..6),
        key in key(),
        value in json(),
        pretty in any::<bool>(),
    ) {
        let doc = Value::Object(members.into_iter().collect());
        let text = if pretty {
            serde_json::to_string_pretty(&doc).unwrap()
        } else {
            doc.to_string()
        };
        let edited = crate::json_text::set_top_level(&text, &key, &value).unwrap();
        let mut want = doc.as_object().unwrap().clone();
        want.insert(key.clone(), value);
        let got: Map<String, Value> = serde_json::from_str(&edited).unwrap();
        prop_assert_eq!(got, want);
        // Every other member's text is where and as it was.
        let removed = crate::json_text::set_top_level(&edited, &key, &Value::Null).unwrap();
        let again = crate::json_text::set_top_level(&text, &key, &Value::Null).unwrap();
        prop_assert_eq!(removed, again);
    }

    #[test]
    fn usage_answers_never_panic(value in json(), at in timestamp()) {
        let snapshot = Snapshot::parse(&value, at);
        let _ = serde_json::to_string(&snapshot);
    }

    #[test]
    fn due_never_panics_at_any_instant(
        expires in prop::option::of(timestamp()),
        refresh_expires in prop::option::of(timestamp()),
        last in timestamp(),
        now in timestamp(),
        margin in duration(),
        keepalive_after in duration(),
        keepalive_margin in duration(),
    ) {
        let policy = Policy { margin, keepalive_after, keepalive_margin };
        let _ = due(expires, refresh_expires, last, now, &policy);
    }

    #[test]
    fn catalogs_from_any_bytes_or_dates_never_panic(
        bytes in any::<Vec<u8>>(),
        slot in json(),
        updated in numeric_text(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slots.json");
        let mut slot = match slot {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        for (key, value) in [
            ("id", "x"), ("name", "x"), ("agent", "claude"), ("kind", "oauth"),
        ] {
            slot.entry(key).or_insert(Value::from(value));
        }
        slot.insert("updated_at".into(), Value::from(updated.clone()));
        slot.entry("created_at").or_insert(Value::from(updated));
        let catalog = serde_json::json!({"version": 1, "slots": [slot]}).to_string();
        for input in [bytes, catalog.into_bytes()] {
            std::fs::write(&path, &input).unwrap();
            if let Ok(catalog) = Catalog::load(&path) {
                let now = Timestamp::now();
                for slot in &catalog.slots {
                    let _ = due(slot.expires_at, slot.refresh_expires_at, slot.updated_at, now, &Policy::default());
                    let _ = (
                        crate::timefmt::relative(slot.updated_at, now),
                        crate::timefmt::local(slot.updated_at),
                        serde_json::to_string(slot),
                    );
                }
            }
        }
    }
}

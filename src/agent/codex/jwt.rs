//! Reading JWT claims without verifying them: Codex's tokens say who they belong to and when
//! they expire, and that is all tokenkeeper takes from them (the provider checks signatures).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Map, Value};

/// The payload of a three-part JWT, or `None` when the token is not one.
pub fn claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.is_empty() {
        return None;
    }
    // Some issuers pad; the standard says not to.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// `exp`, when the token is a JWT that has a sensible one.
pub fn expiry(token: &str) -> Option<Timestamp> {
    let exp = claims(token)?.get("exp")?.as_i64()?;
    Timestamp::from_second(exp).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJub25lIn0.{}.sig",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn claims_and_expiry_are_read_from_the_payload() {
        let token = jwt(r#"{"exp":1800000000,"email":"a@b.c"}"#);
        assert_eq!(claims(&token).unwrap()["email"], "a@b.c");
        assert_eq!(expiry(&token).unwrap().as_second(), 1_800_000_000);
    }

    #[test]
    fn what_is_not_a_jwt_gives_nothing_and_never_panics() {
        for bad in [
            "",
            "opaque-token",
            "a.b",
            "a..c",
            "a.!!!.c",
            "a.b.c.d",
            &jwt("[1]"),
            &jwt(r#"{"exp":"soon"}"#),
            &jwt(r#"{"exp":99999999999999999}"#),
        ] {
            assert!(expiry(bad).is_none(), "{bad}");
        }
    }
}

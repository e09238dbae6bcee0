//! `Secret`: the only type that holds token material outside a parsed credential.
//!
//! It has no `Display`, its `Debug` prints `[redacted]`, its memory is zeroed on drop, and the
//! one way to read it is `expose_secret()` — grep for that to find every place a secret leaves.

use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `prefix` and 24 random bytes in hex: a phantom token for a client.
    pub fn random(prefix: &str) -> crate::error::Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 24]);
        getrandom::fill(bytes.as_mut()).map_err(|err| {
            crate::error::Error::failure(format!("cannot make a random token: {err}"))
        })?;
        let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 48));
        text.push_str(prefix);
        for byte in bytes.iter() {
            text.push_str(&format!("{byte:02x}"));
        }
        Ok(Self(text))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("sk-ant-oat01-planted".into());
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose_secret(), "sk-ant-oat01-planted");
    }
}

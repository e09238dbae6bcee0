//! Reading a secret from standard input: bounded, UTF-8, never echoed.

use std::io::{BufRead, IsTerminal, Read};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A credential is a few hundred bytes; anything past this is a mistake (or an attack).
pub const MAX_STDIN_BYTES: u64 = 1 << 20;

/// Reads all of stdin as a secret. `example` is the pipeline shown in hints.
pub fn read_stdin_secret(example: &str) -> Result<Secret> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(
            Error::usage("expected the credential on standard input, not a terminal")
                .with_hint(format!("pipe it in: {example}")),
        );
    }
    read_secret(stdin.lock(), example)
}

/// Reads the first line of stdin as a secret, then puts `/dev/null` in its place so the writer
/// sees it closed (the agent-loop proxy's start-up contract: one line, then stdin is done).
/// When the first line is one of `modes` (the newer contract: a mode line, then the
/// credential), the second line is the secret and the mode comes back with it.
pub fn take_stdin_line(example: &str, modes: &[&str]) -> Result<(Option<String>, Secret)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(
            Error::usage("expected the token on standard input, not a terminal")
                .with_hint(format!("pipe it in: {example}")),
        );
    }
    let secret = read_mode_and_line(stdin.lock(), example, modes);
    let closed = std::fs::File::open("/dev/null")
        .and_then(|null| nix::unistd::dup2_stdin(null).map_err(std::io::Error::from));
    if let Err(err) = closed {
        tracing::debug!(error = %err, "cannot close standard input");
    }
    secret
}

fn read_mode_and_line(
    mut reader: impl BufRead,
    example: &str,
    modes: &[&str],
) -> Result<(Option<String>, Secret)> {
    let first = read_line(&mut reader, example)?;
    let word = first.expose_secret().trim();
    match modes.iter().find(|mode| **mode == word) {
        Some(mode) => Ok((Some(mode.to_string()), read_line(reader, example)?)),
        None => Ok((None, first)),
    }
}

fn read_line(reader: impl BufRead, example: &str) -> Result<Secret> {
    let mut buf = Zeroizing::new(Vec::new());
    reader
        .take(MAX_STDIN_BYTES + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|err| Error::failure(format!("cannot read standard input: {err}")))?;
    check_secret(buf, example)
}

fn read_secret(reader: impl Read, example: &str) -> Result<Secret> {
    let mut buf = Zeroizing::new(Vec::new());
    reader
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|err| Error::failure(format!("cannot read standard input: {err}")))?;
    check_secret(buf, example)
}

fn check_secret(buf: Zeroizing<Vec<u8>>, example: &str) -> Result<Secret> {
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(Error::failure(
            "standard input is larger than 1 MiB; a credential is a few hundred bytes",
        ));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::failure("standard input is empty")
            .with_hint(format!("pipe the credential in: {example}")));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| Error::failure("standard input is not UTF-8 text"))?;
    Ok(Secret::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_line_is_taken() {
        let secret = read_line(&b"sk-ant-oat01-first\nsecond line\n"[..], "x").unwrap();
        let (mode, key) = read_mode_and_line(
            &b"api_key\nsk-short\nmore\n"[..],
            "x",
            &["oauth", "api_key"],
        )
        .unwrap();
        assert_eq!(mode.as_deref(), Some("api_key"));
        assert_eq!(key.expose_secret().trim(), "sk-short");
        let (mode, _) = read_mode_and_line(&b"sk-ant-oat01-first\n"[..], "x", &["oauth"]).unwrap();
        assert_eq!(mode, None);
        assert_eq!(secret.expose_secret(), "sk-ant-oat01-first\n");
        assert!(read_line(&b"\n"[..], "x").is_err());
    }

    #[test]
    fn limits_and_checks() {
        assert!(
            read_secret(&b"  \n"[..], "x")
                .unwrap_err()
                .message()
                .contains("empty")
        );
        assert!(
            read_secret(&b"\xff\xfe"[..], "x")
                .unwrap_err()
                .message()
                .contains("UTF-8")
        );
        let huge = vec![b'a'; (MAX_STDIN_BYTES + 10) as usize];
        assert!(
            read_secret(&huge[..], "x")
                .unwrap_err()
                .message()
                .contains("1 MiB")
        );
        assert_eq!(
            read_secret(&b"tok\n"[..], "x").unwrap().expose_secret(),
            "tok\n"
        );
    }
}

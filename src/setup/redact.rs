//! Finds tokens in a terminal stream and hides them on the way through.
//!
//! `claude setup-token` prints its token through a terminal UI: coloured (escape sequences
//! around and sometimes inside it) and hard-wrapped to the terminal's width, so one token may
//! span several rows. The [`Redactor`] is fed the child's output chunk by chunk (a chunk may end
//! anywhere, mid-escape or mid-token) and returns what can be shown: the same bytes with every
//! `sk-ant-…` token replaced by `<redacted>`. The escape sequences and line breaks that were
//! inside a token follow the placeholder, so colours reset and the screen keeps its row count.
//!
//! A row after a token continues it when it holds token characters only (after indentation);
//! a blank line or a row with other text ends it. Bytes that may still turn out to be part of
//! a token are held back until that is decided, or until [`Redactor::finish`].

use crate::secret::Secret;

const PREFIX: &[u8] = b"sk-ant-";
pub const PLACEHOLDER: &str = "<redacted>";

// No Debug, here or below: these hold token bytes.
#[derive(Clone, PartialEq, Eq)]
enum Unit {
    /// An escape sequence, whole.
    Esc(Vec<u8>),
    /// `\n` or `\r`.
    Break(u8),
    /// Any other byte.
    Byte(u8),
}

impl Unit {
    fn bytes(&self) -> &[u8] {
        match self {
            Unit::Esc(bytes) => bytes,
            Unit::Break(b) | Unit::Byte(b) => std::slice::from_ref(b),
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[derive(Default)]
enum State {
    #[default]
    Normal,
    /// `matched` bytes of the prefix seen; `held` are their units.
    Prefix { matched: usize, held: Vec<Unit> },
    /// Inside a token.
    Token,
    /// After a line break that followed token characters: a continuation row may come.
    Gap { newlines: usize, held: Vec<Unit> },
    /// A row that may continue the token: its token bytes, and all its units.
    Row {
        gap: Vec<Unit>,
        bytes: Vec<u8>,
        held: Vec<Unit>,
    },
}

#[derive(Default)]
pub struct Redactor {
    state: State,
    /// Bytes of an escape sequence cut by the end of a chunk.
    partial: Vec<u8>,
    token: Vec<u8>,
    /// Escapes and breaks met inside the current token, shown after the placeholder.
    inside: Vec<u8>,
    found: Vec<Secret>,
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of output; returns what can be shown now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(chunk);
        let mut at = 0;
        while at < bytes.len() {
            match next_unit(&bytes[at..]) {
                Some((unit, len)) => {
                    self.unit(unit, &mut out);
                    at += len;
                }
                None => {
                    self.partial = bytes[at..].to_vec();
                    break;
                }
            }
        }
        zeroize::Zeroize::zeroize(&mut bytes);
        out
    }

    /// The end of the stream: everything still held is decided and returned.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match std::mem::take(&mut self.state) {
            State::Normal => {}
            State::Prefix { held, .. } => {
                held.iter().for_each(|u| out.extend_from_slice(u.bytes()))
            }
            State::Token => self.end_token(&mut out, &[]),
            State::Gap { held, .. } => self.end_token(&mut out, &held),
            State::Row { gap, bytes, held } => {
                // A row cut off by the end is taken as the token's last part: showing it
                // could show a piece of the token.
                self.absorb_row(&gap, &bytes, &held);
                self.end_token(&mut out, &[]);
            }
        }
        out.append(&mut self.partial);
        out
    }

    /// The tokens found so far, in order (a screen redrawn shows the same one again).
    pub fn tokens(&self) -> &[Secret] {
        &self.found
    }

    fn unit(&mut self, unit: Unit, out: &mut Vec<u8>) {
        match std::mem::take(&mut self.state) {
            State::Normal => match unit {
                Unit::Byte(b) if b == PREFIX[0] => {
                    self.state = State::Prefix {
                        matched: 1,
                        held: vec![unit],
                    }
                }
                other => out.extend_from_slice(other.bytes()),
            },
            State::Prefix { matched, mut held } => match unit {
                Unit::Byte(b) if b == PREFIX[matched] => {
                    held.push(unit);
                    if matched + 1 == PREFIX.len() {
                        self.token = PREFIX.to_vec();
                        self.inside.clear();
                        for unit in &held {
                            if let Unit::Esc(bytes) = unit {
                                self.inside.extend_from_slice(bytes);
                            }
                        }
                        self.state = State::Token;
                    } else {
                        self.state = State::Prefix {
                            matched: matched + 1,
                            held,
                        };
                    }
                }
                Unit::Esc(_) => {
                    held.push(unit);
                    self.state = State::Prefix { matched, held };
                }
                other => {
                    // Not a token after all: show the first byte, look at the rest again.
                    let mut rest = held.into_iter();
                    if let Some(first) = rest.next() {
                        out.extend_from_slice(first.bytes());
                    }
                    for unit in rest.chain(std::iter::once(other)) {
                        self.unit(unit, out);
                    }
                }
            },
            State::Token => match unit {
                Unit::Byte(b) if is_token_byte(b) => {
                    self.token.push(b);
                    self.state = State::Token;
                }
                Unit::Esc(bytes) => {
                    self.inside.extend_from_slice(&bytes);
                    self.state = State::Token;
                }
                Unit::Break(b) => {
                    self.state = State::Gap {
                        newlines: usize::from(b == b'\n'),
                        held: vec![Unit::Break(b)],
                    }
                }
                other => {
                    self.end_token(out, &[]);
                    self.unit(other, out);
                }
            },
            State::Gap { newlines, mut held } => match unit {
                Unit::Break(b) => {
                    let newlines = newlines + usize::from(b == b'\n');
                    held.push(unit);
                    if newlines >= 2 {
                        self.end_token(out, &held);
                    } else {
                        self.state = State::Gap { newlines, held };
                    }
                }
                Unit::Esc(_) | Unit::Byte(b' ') => {
                    held.push(unit);
                    self.state = State::Gap { newlines, held };
                }
                Unit::Byte(b) if is_token_byte(b) => {
                    self.state = State::Row {
                        gap: held,
                        bytes: vec![b],
                        held: vec![unit],
                    }
                }
                other => {
                    self.end_token(out, &held);
                    self.unit(other, out);
                }
            },
            State::Row {
                gap,
                mut bytes,
                mut held,
            } => match unit {
                Unit::Byte(b) if is_token_byte(b) => {
                    bytes.push(b);
                    held.push(unit);
                    self.state = State::Row { gap, bytes, held };
                }
                Unit::Esc(_) => {
                    held.push(unit);
                    self.state = State::Row { gap, bytes, held };
                }
                Unit::Break(b) => {
                    // A whole row of token characters: the token goes on.
                    self.absorb_row(&gap, &bytes, &held);
                    self.state = State::Gap {
                        newlines: usize::from(b == b'\n'),
                        held: vec![Unit::Break(b)],
                    };
                }
                other => {
                    // Text: the token ended at the line break before this row.
                    self.end_token(out, &gap);
                    for unit in held.into_iter().chain(std::iter::once(other)) {
                        self.unit(unit, out);
                    }
                }
            },
        }
    }

    /// Takes a continuation row into the token; its breaks, escapes and indentation are shown
    /// after the placeholder.
    fn absorb_row(&mut self, gap: &[Unit], bytes: &[u8], held: &[Unit]) {
        self.token.extend_from_slice(bytes);
        for unit in gap.iter().chain(held) {
            if !matches!(unit, Unit::Byte(b) if is_token_byte(*b)) {
                self.inside.extend_from_slice(unit.bytes());
            }
        }
    }

    /// Records the token, shows the placeholder, then what was inside it and `after`.
    fn end_token(&mut self, out: &mut Vec<u8>, after: &[Unit]) {
        let token = String::from_utf8_lossy(&self.token).into_owned();
        zeroize::Zeroize::zeroize(&mut self.token);
        self.found.push(Secret::new(token));
        out.extend_from_slice(PLACEHOLDER.as_bytes());
        out.append(&mut self.inside);
        for unit in after {
            out.extend_from_slice(unit.bytes());
        }
        self.state = State::Normal;
    }
}

/// The first unit of `bytes` and its length, or `None` when an escape sequence is cut off.
fn next_unit(bytes: &[u8]) -> Option<(Unit, usize)> {
    let first = *bytes.first()?;
    match first {
        b'\n' | b'\r' => Some((Unit::Break(first), 1)),
        0x1b => {
            let len = escape_len(bytes)?;
            Some((Unit::Esc(bytes[..len].to_vec()), len))
        }
        _ => Some((Unit::Byte(first), 1)),
    }
}

/// The length of the escape sequence at the start of `bytes` (ECMA-48: CSI, OSC and the other
/// string sequences, or ESC with intermediates and a final byte), `None` when incomplete.
fn escape_len(bytes: &[u8]) -> Option<usize> {
    let kind = *bytes.get(1)?;
    match kind {
        b'[' => bytes[2..]
            .iter()
            .position(|b| (0x40..=0x7e).contains(b))
            .map(|i| i + 3),
        b']' | b'P' | b'X' | b'^' | b'_' => {
            // Ends with BEL (OSC only) or ST (ESC \).
            let body = &bytes[2..];
            for i in 0..body.len() {
                if body[i] == 0x07 && kind == b']' {
                    return Some(i + 3);
                }
                if body[i] == 0x1b && body.get(i + 1) == Some(&b'\\') {
                    return Some(i + 4);
                }
                if body[i] == 0x1b && i + 1 == body.len() {
                    return None;
                }
            }
            None
        }
        _ => {
            // Intermediates 0x20–0x2F, then one final byte.
            let rest = &bytes[1..];
            let i = rest.iter().position(|b| !(0x20..=0x2f).contains(b))?;
            Some(i + 2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "sk-ant-oat01-Ab1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xAb1_-xA";

    /// What `claude setup-token` prints at the end, with the token hard-wrapped to `width`.
    fn screen(token: &str, width: usize) -> Vec<u8> {
        let mut s =
            String::from("\x1b[32m✓\x1b[39m Long-lived authentication token created\r\n\r\n");
        s.push_str("Your OAuth token (valid for 1 year):\r\n\r\n\x1b[33m");
        let rows: Vec<&str> = token
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        s.push_str(&rows.join("\r\n"));
        s.push_str("\x1b[39m\r\n\r\n\x1b[2mStore this token securely. You won't be able to see it again.\x1b[22m\r\n");
        s.push_str(
            "\x1b[2mUse this token by setting: export CLAUDE_CODE_OAUTH_TOKEN=<token>\x1b[22m\r\n",
        );
        s.into_bytes()
    }

    fn run(chunks: &[&[u8]]) -> (String, Vec<String>) {
        let mut r = Redactor::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(r.feed(chunk));
        }
        out.extend(r.finish());
        let tokens = r
            .tokens()
            .iter()
            .map(|t| t.expose_secret().to_string())
            .collect();
        (String::from_utf8(out).unwrap(), tokens)
    }

    #[test]
    fn a_wrapped_coloured_token_is_found_whole_and_hidden() {
        for width in [40, 80, 108, 200] {
            let (shown, tokens) = run(&[&screen(TOKEN, width)]);
            assert_eq!(tokens, vec![TOKEN.to_string()], "width {width}");
            assert!(!shown.contains("sk-ant"), "{shown}");
            assert!(!shown.contains("Ab1_"), "{shown}");
            assert!(shown.contains("<redacted>"));
            assert!(shown.contains("Store this token securely"));
            assert!(shown.contains("CLAUDE_CODE_OAUTH_TOKEN=<token>"));
            // The row count is kept: as many line breaks as went in.
            let input = String::from_utf8(screen(TOKEN, width)).unwrap();
            assert_eq!(shown.matches('\n').count(), input.matches('\n').count());
        }
    }

    #[test]
    fn escapes_inside_the_token_and_indentation_are_handled() {
        let mut s = b"  \x1b[33msk-ant-oat01-AAAA\x1b[0m\x1b[33mBBBB\r\n  CCCC\x1b[39m\r\n\r\nnext line\r\n".to_vec();
        s.extend_from_slice(b"ask me: sk-an? no\r\n");
        let (shown, tokens) = run(&[&s]);
        assert_eq!(tokens, vec!["sk-ant-oat01-AAAABBBBCCCC".to_string()]);
        assert!(shown.contains("next line"));
        assert!(shown.contains("ask me: sk-an? no"), "{shown}");
        assert!(!shown.contains("AAAA") && !shown.contains("CCCC"));
    }

    #[test]
    fn text_right_after_the_token_ends_it() {
        let (shown, tokens) =
            run(&[b"token: sk-ant-oat01-XYZ done\r\nsk-ant-oat01-QQ\r\nStore this\r\n"]);
        assert_eq!(
            tokens,
            vec![
                "sk-ant-oat01-XYZ".to_string(),
                "sk-ant-oat01-QQ".to_string()
            ]
        );
        assert_eq!(
            shown,
            "token: <redacted> done\r\n<redacted>\r\nStore this\r\n"
        );
    }

    proptest! {
        /// However the output is cut into chunks, the same token is found and none of it shown.
        #[test]
        fn any_chunking_gives_the_same_result(cuts in proptest::collection::vec(0usize..900, 0..12), width in 20usize..120) {
            let input = screen(TOKEN, width);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for cut in cuts {
                chunks.push(&input[last..cut]);
                last = cut;
            }
            chunks.push(&input[last..]);
            let (shown, tokens) = run(&chunks);
            let (whole, _) = run(&[&input]);
            prop_assert_eq!(tokens, vec![TOKEN.to_string()]);
            prop_assert!(!shown.contains("Ab1_"));
            prop_assert_eq!(shown, whole);
        }
    }
}

//! Edits one top-level key of a JSON object's text and keeps every other byte: for files
//! another program owns and rewrites (Claude Code's `.claude.json`), where a parse and a
//! re-serialisation would reformat, reorder or re-round what tokenkeeper has no business
//! touching.

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{PrettyFormatter, Serializer};

/// Where one top-level member sits in the text: the key's first byte and the value's span.
struct Member {
    key_start: usize,
    value: std::ops::Range<usize>,
}

/// `text` (a JSON object) with `key` set to `value`: the old value's bytes replaced where it
/// stood, or the member added last. The new value is laid out as the document is (indented
/// like its members, or compact). `None` when `text` is not a JSON object.
pub fn set_top_level(text: &str, key: &str, value: &Value) -> Option<String> {
    serde_json::from_str::<serde_json::Map<String, Value>>(text).ok()?;
    let (members, close) = scan(text)?;
    let indent = members
        .first()
        .and_then(|m| {
            let before = &text[..m.key_start];
            let line = before.rsplit('\n').next()?;
            before.contains('\n').then(|| line.to_string())
        })
        .filter(|line| line.chars().all(|c| c == ' ' || c == '\t'));
    let rendered = render(value, indent.as_deref());
    let found = members
        .iter()
        .rev()
        .find(|m| serde_json::from_str::<String>(key_text(text, m)).is_ok_and(|k| k == key));
    let mut out = String::with_capacity(text.len() + rendered.len());
    match found {
        Some(member) => {
            out.push_str(&text[..member.value.start]);
            out.push_str(&rendered);
            out.push_str(&text[member.value.end..]);
        }
        None => {
            let name = serde_json::to_string(key).expect("a string serialises");
            let (at, sep) = match (members.last(), &indent) {
                (Some(last), Some(indent)) => (last.value.end, format!(",\n{indent}")),
                (Some(last), None) => (last.value.end, ",".to_string()),
                (None, _) => (close, String::new()),
            };
            let colon = if indent.is_some() { ": " } else { ":" };
            out.push_str(&text[..at]);
            out.push_str(&sep);
            out.push_str(&name);
            out.push_str(colon);
            out.push_str(&rendered);
            out.push_str(&text[at..]);
        }
    }
    Some(out)
}

/// The raw text of a member's key (with its quotes).
fn key_text<'a>(text: &'a str, member: &Member) -> &'a str {
    let rest = &text[member.key_start..];
    let end = string_end(rest.as_bytes(), 0).unwrap_or(rest.len());
    &rest[..end]
}

/// `value` as JSON, indented for a member whose line starts with `indent` (`None`: compact).
fn render(value: &Value, indent: Option<&str>) -> String {
    let Some(indent) = indent else {
        return serde_json::to_string(value).expect("a value serialises");
    };
    // A top-level member is indented by one unit.
    let unit = indent;
    let mut bytes = Vec::new();
    let mut serializer =
        Serializer::with_formatter(&mut bytes, PrettyFormatter::with_indent(unit.as_bytes()));
    value
        .serialize(&mut serializer)
        .expect("a value serialises");
    let text = String::from_utf8(bytes).expect("JSON is UTF-8");
    text.replace('\n', &format!("\n{indent}"))
}

/// The top-level members of an object, and where its closing brace is.
fn scan(text: &str) -> Option<(Vec<Member>, usize)> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut members = Vec::new();
    loop {
        i = skip_ws(bytes, i);
        match bytes.get(i)? {
            b'}' => return Some((members, i)),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_start = i;
        i = skip_ws(bytes, string_end(bytes, i)?);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(bytes, i + 1);
        let end = value_end(bytes, start)?;
        members.push(Member {
            key_start,
            value: start..end,
        });
        i = end;
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// Given the index of an opening quote, the index just past the closing one.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The index just past the value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_a_value_where_it_stands_and_keeps_every_other_byte() {
        let text = "{\n  \"numStartups\": 3,\n  \"oauthAccount\": {\n    \"accountUuid\": \"old\"\n  },\n  \"tips\": [1.50, \"}\\\"{\"]\n}\n";
        let out = set_top_level(
            text,
            "oauthAccount",
            &json!({"accountUuid": "new", "emailAddress": "n@x"}),
        )
        .unwrap();
        assert_eq!(
            out,
            "{\n  \"numStartups\": 3,\n  \"oauthAccount\": {\n    \"accountUuid\": \"new\",\n    \"emailAddress\": \"n@x\"\n  },\n  \"tips\": [1.50, \"}\\\"{\"]\n}\n"
        );
    }

    #[test]
    fn adds_a_missing_member_last_in_the_document_s_layout() {
        assert_eq!(
            set_top_level("{\n  \"a\": 1\n}", "k", &json!({"x": 1})).unwrap(),
            "{\n  \"a\": 1,\n  \"k\": {\n    \"x\": 1\n  }\n}"
        );
        assert_eq!(
            set_top_level(r#"{"a":1}"#, "k", &json!([1])).unwrap(),
            r#"{"a":1,"k":[1]}"#
        );
        assert_eq!(set_top_level("{}", "k", &json!(1)).unwrap(), r#"{"k":1}"#);
    }

    #[test]
    fn a_document_indented_by_four_or_tabs_keeps_its_indentation() {
        assert_eq!(
            set_top_level("{\n    \"a\": 1\n}", "a", &json!({"x": [1]})).unwrap(),
            "{\n    \"a\": {\n        \"x\": [\n            1\n        ]\n    }\n}"
        );
        assert_eq!(
            set_top_level("{\n\t\"a\": 1\n}", "a", &json!({"x": 1})).unwrap(),
            "{\n\t\"a\": {\n\t\t\"x\": 1\n\t}\n}"
        );
    }

    #[test]
    fn only_objects_are_edited() {
        assert!(set_top_level("[1]", "k", &json!(1)).is_none());
        assert!(set_top_level("{\"a\":", "k", &json!(1)).is_none());
    }
}

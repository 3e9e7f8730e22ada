//! ETags compatible with the original service's clients: the quoted lowercase hex SHA-256 of the
//! JSON text Python's `json.dumps(obj, sort_keys=True)` produces for the same object (separators
//! `", "` and `": "`, ASCII-only output with `\uXXXX` escapes, Python's float repr).
//! `If-None-Match` / `If-Match` accept a comma-separated list of quoted, bare or weak (`W/`)
//! tags, or `*`.

use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `json.dumps(value, sort_keys=True)`.
pub fn python_json(value: &Value) -> String {
    let mut out = String::with_capacity(512);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str("null"),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Byte order of UTF-8 strings is code point order, which is what Python sorts by.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, &map[key]);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs of printable ASCII other than `"` and `\\` are copied as they are (most of any text);
    // everything else is escaped one character at a time, as `json.dumps` does.
    let plain = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    let mut rest = s;
    while !rest.is_empty() {
        let run = rest.bytes().position(|b| !plain(b)).unwrap_or(rest.len());
        out.push_str(&rest[..run]);
        rest = &rest[run..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-tripping digits, fixed notation for exponents in
/// -4..16, scientific (`1e+20`) otherwise.
fn python_float(f: f64) -> String {
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int_part, frac) = if digits.len() > int_len {
                (digits[..int_len].to_owned(), digits[int_len..].to_owned())
            } else {
                (format!("{digits:0<int_len$}"), "0".to_owned())
            };
            format!("{sign}{int_part}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// The quoted ETag of a JSON value.
pub fn etag(value: &Value) -> String {
    format!(
        "\"{}\"",
        hex::encode(Sha256::digest(python_json(value).as_bytes()))
    )
}

/// Whether a conditional header (`If-None-Match` / `If-Match`) matches `etag` (weak comparison).
pub fn matches(header: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    header.split(',').map(str::trim).any(|candidate| {
        if candidate == "*" {
            return true;
        }
        let candidate = candidate.strip_prefix("W/").unwrap_or(candidate);
        candidate.trim_matches('"') == bare
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected values produced by CPython 3.11: json.dumps(obj, sort_keys=True) and its SHA-256.
    #[test]
    fn matches_python_for_the_original_job_shape() {
        let job = json!({"id": "3f1c0a2e-1111-4222-8333-944455556666", "name": "Build", "status": "pending",
                          "created_at": "2026-11-22T20:00:00.123456Z", "updated_at": null});
        assert_eq!(
            python_json(&job),
            r#"{"created_at": "2026-11-22T20:00:00.123456Z", "id": "3f1c0a2e-1111-4222-8333-944455556666", "name": "Build", "status": "pending", "updated_at": null}"#
        );
        assert_eq!(
            etag(&job),
            "\"9c68ee5da42947e669bca27215796ea990b32d9833bec7be61a4b81c5398a360\""
        );
    }

    #[test]
    fn escapes_nesting_and_ordering_match_python() {
        let v = json!({"title": "Caf\u{e9} \u{2014} \u{1F680} \"quoted\" \\ back\nline\t\u{1}", "n": 12, "neg": -3,
                       "ok": true, "no": false, "nested": {"b": [1, 2, {"z": null, "a": []}], "a": {}}});
        assert_eq!(
            python_json(&v),
            r#"{"n": 12, "neg": -3, "nested": {"a": {}, "b": [1, 2, {"a": [], "z": null}]}, "no": false, "ok": true, "title": "Caf\u00e9 \u2014 \ud83d\ude80 \"quoted\" \\ back\nline\t\u0001"}"#
        );
        assert_eq!(
            etag(&v),
            "\"a9a14c7c12cba5ccb6e283f85f2df9bc67562750d51eaf93d34a00dc56866d0b\""
        );
        assert_eq!(
            etag(&json!([])),
            "\"4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945\""
        );
    }

    #[test]
    fn floats_use_python_repr() {
        let v = json!({"f": 1.5, "g": 1e20, "h": 0.0001, "i": 1e-05, "j": 2.0, "k": 123456789012345678u64});
        assert_eq!(
            python_json(&v),
            r#"{"f": 1.5, "g": 1e+20, "h": 0.0001, "i": 1e-05, "j": 2.0, "k": 123456789012345678}"#
        );
        assert_eq!(
            etag(&v),
            "\"bd6dc27b6d0fd33640452c200cdbb038ff18f22a2ad1eda0ce2dba711cb3371b\""
        );
        assert_eq!(python_float(-0.5), "-0.5");
        assert_eq!(python_float(123.25), "123.25");
        assert_eq!(python_float(1e16), "1e+16");
    }

    #[test]
    fn conditional_headers() {
        let tag = "\"abc\"";
        for header in [
            "\"abc\"",
            "abc",
            "W/\"abc\"",
            "\"x\", \"abc\"",
            "*",
            " \"y\" ,W/\"abc\"",
        ] {
            assert!(matches(header, tag), "{header}");
        }
        for header in ["\"abcd\"", "", "\"ab\", \"c\""] {
            assert!(!matches(header, tag), "{header}");
        }
    }
}

//! CloudWatch Logs filter patterns, the subset that makes sense for function logs:
//!
//! * `ERROR timeout` — every term must occur (case-sensitive, as in CloudWatch);
//! * `"exact phrase"` — a quoted term may hold spaces;
//! * `?ERROR ?WARN` — at least one of the `?` terms must occur;
//! * `-DEBUG` — the term must not occur;
//! * `{ $.level = "ERROR" }`, `{ $.record.status != "success" }`, `{ $.n = 3 }` — JSON
//!   events whose field at the path equals (or not) the value; `*` at the end of a string
//!   value matches any suffix.
//!
//! Anything else (space-delimited `[a, b]` patterns, metric expressions) is refused with a
//! message rather than silently matching everything.

/// Why a filter pattern was refused (`InvalidParameterException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid filter pattern: {0}")]
pub struct PatternError(pub String);

/// A parsed filter pattern; the empty pattern matches every event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterPattern {
    required: Vec<String>,
    any_of: Vec<String>,
    excluded: Vec<String>,
    json: Option<JsonTest>,
}

#[derive(Debug, Clone, PartialEq)]
struct JsonTest {
    path: Vec<String>,
    equal: bool,
    value: serde_json::Value,
}

impl FilterPattern {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix('{') {
            let inner = inner
                .strip_suffix('}')
                .ok_or_else(|| PatternError("missing closing '}'".into()))?;
            return Ok(FilterPattern {
                json: Some(parse_json_test(inner)?),
                ..Default::default()
            });
        }
        if text.starts_with('[') {
            return Err(PatternError(
                "space-delimited patterns ([...]) are not supported".into(),
            ));
        }
        let mut p = FilterPattern::default();
        for (prefix, term) in terms(text)? {
            match prefix {
                Some('?') => p.any_of.push(term),
                Some('-') => p.excluded.push(term),
                _ => p.required.push(term),
            }
        }
        Ok(p)
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        if let Some(t) = &self.json {
            return t.matches(message);
        }
        self.required.iter().all(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
    }
}

/// Splits into terms, each with its `?`/`-` prefix; quotes group words.
fn terms(text: &str) -> Result<Vec<(Option<char>, String)>, PatternError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let prefix = if c == '?' || c == '-' {
            chars.next();
            Some(c)
        } else {
            None
        };
        let mut term = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => term.extend(chars.next()),
                    Some(ch) => term.push(ch),
                    None => return Err(PatternError("unterminated quote".into())),
                }
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                term.push(ch);
                chars.next();
            }
        }
        if !term.is_empty() {
            out.push((prefix, term));
        }
    }
    Ok(out)
}

fn parse_json_test(inner: &str) -> Result<JsonTest, PatternError> {
    let (lhs, rhs, equal) = if let Some((l, r)) = inner.split_once("!=") {
        (l, r, false)
    } else if let Some((l, r)) = inner.split_once('=') {
        (l, r, true)
    } else {
        return Err(PatternError("expected { $.field = value }".into()));
    };
    let path = lhs
        .trim()
        .strip_prefix("$.")
        .ok_or_else(|| PatternError("a JSON selector starts with $.".into()))?;
    if path.contains("&&") || path.contains("||") || rhs.contains("&&") || rhs.contains("||") {
        return Err(PatternError("&& and || are not supported".into()));
    }
    let rhs = rhs.trim().trim_start_matches('=').trim();
    let value = if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        serde_json::Value::String(s.to_owned())
    } else if let Ok(n) = rhs.parse::<f64>() {
        serde_json::json!(n)
    } else if rhs.is_empty() {
        return Err(PatternError("missing value".into()));
    } else {
        serde_json::Value::String(rhs.to_owned())
    };
    Ok(JsonTest {
        path: path.split('.').map(str::to_owned).collect(),
        equal,
        value,
    })
}

impl JsonTest {
    fn matches(&self, message: &str) -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(message) else {
            return false;
        };
        let mut at = &v;
        for key in &self.path {
            match at.get(key) {
                Some(next) => at = next,
                None => return false,
            }
        }
        let same = match (&self.value, at) {
            (serde_json::Value::String(want), serde_json::Value::String(got)) => {
                match want.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == want,
                }
            }
            (serde_json::Value::Number(want), serde_json::Value::Number(got)) => {
                want.as_f64() == got.as_f64()
            }
            // A quoted value matches a number or boolean with the same text.
            (serde_json::Value::String(want), other) => {
                let text = other.to_string();
                text == *want
            }
            _ => false,
        };
        same == self.equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        FilterPattern::parse(p).unwrap().matches(msg)
    }

    #[test]
    fn terms_phrases_and_exclusions() {
        assert!(m("", "anything"));
        assert!(m("ERROR", "an ERROR here"));
        assert!(!m("ERROR", "an error here"), "case-sensitive");
        assert!(m("ERROR db", "ERROR in db"));
        assert!(!m("ERROR db", "ERROR in cache"));
        assert!(m("\"in db\"", "ERROR in db"));
        assert!(!m("\"in db\"", "in the db"));
        assert!(m("?ERROR ?WARN", "WARN: x"));
        assert!(!m("?ERROR ?WARN", "INFO: x"));
        assert!(m("START -REPORT", "START RequestId"));
        assert!(!m("RequestId -REPORT", "REPORT RequestId"));
    }

    #[test]
    fn json_selectors() {
        let rec = r#"{"type":"platform.report","record":{"status":"success","metrics":{"billedDurationMs":3}}}"#;
        assert!(m(r#"{ $.type = "platform.report" }"#, rec));
        assert!(m(r#"{ $.type = "platform.*" }"#, rec));
        assert!(m(r#"{ $.record.status != "error" }"#, rec));
        assert!(m("{ $.record.metrics.billedDurationMs = 3 }", rec));
        assert!(!m("{ $.record.metrics.billedDurationMs = 4 }", rec));
        assert!(!m(r#"{ $.level = "ERROR" }"#, rec));
        assert!(!m(r#"{ $.level = "ERROR" }"#, "not json"));
    }

    #[test]
    fn unsupported_patterns_are_refused() {
        for bad in [
            "[ip, user]",
            "{ $.a = 1 && $.b = 2 }",
            "{ a = 1 }",
            "\"open",
            "{ $.a = 1",
        ] {
            assert!(FilterPattern::parse(bad).is_err(), "{bad}");
        }
    }
}

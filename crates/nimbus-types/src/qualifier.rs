//! Qualifiers: what follows a function name to pick one of its versions.
//!
//! Lambda spells them as strings (`$LATEST`, `7`, `live`); inside Nimbus they are a
//! [`Qualifier`], so "is this `$LATEST`?" is a match, not a string comparison.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A qualifier of a function: `$LATEST`, a version number, or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Qualifier {
    Latest,
    Version(u64),
    Alias(String),
}

impl Qualifier {
    /// Lambda's spelling of the unpublished version.
    pub const LATEST: &'static str = "$LATEST";

    /// Reads a qualifier as Lambda writes it. Digits are a version number (a number too
    /// large for `u64` names no version and is kept as an alias name, which then fails to
    /// resolve like any unknown alias); anything else is an alias name, checked where it
    /// is resolved.
    pub fn parse(s: &str) -> Self {
        if s == Self::LATEST {
            return Self::Latest;
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = s.parse() {
                return Self::Version(n);
            }
        }
        Self::Alias(s.to_string())
    }

    /// A version string as stored on records (`$LATEST` or digits), never an alias.
    pub fn version(version: &str) -> Option<Self> {
        match Self::parse(version) {
            Self::Alias(_) => None,
            q => Some(q),
        }
    }

    pub fn is_latest(&self) -> bool {
        matches!(self, Self::Latest)
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str(Self::LATEST),
            Self::Version(n) => write!(f, "{n}"),
            Self::Alias(a) => f.write_str(a),
        }
    }
}

impl From<&str> for Qualifier {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::Qualifier;

    #[test]
    fn parses_and_prints_lambdas_spellings() {
        for (s, q) in [
            ("$LATEST", Qualifier::Latest),
            ("7", Qualifier::Version(7)),
            ("live", Qualifier::Alias("live".into())),
            ("1a", Qualifier::Alias("1a".into())),
            ("$latest", Qualifier::Alias("$latest".into())),
        ] {
            assert_eq!(Qualifier::parse(s), q, "{s}");
            assert_eq!(q.to_string(), s);
        }
        assert_eq!(Qualifier::version("live"), None);
        assert_eq!(Qualifier::version("$LATEST"), Some(Qualifier::Latest));
        // Out of range digits are no version number.
        assert!(matches!(
            Qualifier::parse("99999999999999999999999"),
            Qualifier::Alias(_)
        ));
    }
}

//! Policy variables: `${aws:username}` and friends inside `Resource` elements and string /
//! ARN condition values (policies of version 2012-10-17 only; in 2008-10-17 documents
//! `${` is ordinary text, as on AWS).
//!
//! Why: one policy can then serve many principals (`arn:aws:iam::*:user/${aws:username}`
//! lets every user manage only themselves). A value is split at parse time into
//! wildcard tokens and variable slots; values without variables compile to a plain
//! [`Pattern`], so only those that really use a variable pay for substitution (one small
//! vector per match). Substituted text is always literal — a `*` in a user name is not a
//! wildcard — and `${*}`, `${?}`, `${$}` write a literal `*`, `?`, `$`. A variable whose key
//! is absent (or has several values) and has no `${key, 'default'}` makes the value match
//! nothing.

use crate::context::Env;
use crate::matching::{match_tokens, Case, Pattern, Token, TokenBuilder};

/// How a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (Resource, `StringLike`, `Arn*`).
    pub(crate) wildcards: bool,
    /// `${…}` is a policy variable (version 2012-10-17 documents).
    pub(crate) variables: bool,
}

/// A compiled value that may contain policy variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Template {
    Static(Pattern),
    Dynamic { parts: Box<[Part]>, case: Case },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Token(Token<Box<str>>),
    Var {
        /// Lower-cased key name.
        key: Box<str>,
        default: Option<Box<str>>,
    },
}

impl Template {
    pub(crate) fn compile(source: &str, syntax: Syntax, case: Case) -> Self {
        let mut parts: Vec<Part> = Vec::new();
        let mut builder = TokenBuilder::default();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if syntax.variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let inner = rest[2..end].trim();
                    match inner {
                        "*" | "?" | "$" => builder.push_str(inner),
                        _ => match parse_variable(inner) {
                            Some(var) => {
                                parts.extend(builder.take().into_iter().map(Part::Token));
                                parts.push(var);
                            }
                            // Not a variable after all: `$` is just a character.
                            None => {
                                builder.push('$');
                                rest = &rest[1..];
                                continue;
                            }
                        },
                    }
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            match c {
                '*' if syntax.wildcards => builder.star(),
                '?' if syntax.wildcards => builder.one(),
                c => builder.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        let tail = builder.finish();
        if parts.is_empty() {
            Template::Static(Pattern::from_tokens(tail, case))
        } else {
            parts.extend(tail.into_iter().map(Part::Token));
            Template::Dynamic {
                parts: parts.into_boxed_slice(),
                case,
            }
        }
    }

    /// Whether `text` matches, with variables resolved from `env`.
    pub(crate) fn matches(&self, text: &str, env: &Env<'_>) -> bool {
        match self {
            Template::Static(pattern) => pattern.matches(text),
            Template::Dynamic { parts, case } => {
                let mut tokens = Vec::with_capacity(parts.len());
                for part in parts.iter() {
                    match part {
                        Part::Token(t) => tokens.push(t.as_borrowed()),
                        Part::Var { key, default } => {
                            match env.single(key).or(default.as_deref()) {
                                Some(value) => tokens.push(Token::Lit(value)),
                                None => return false,
                            }
                        }
                    }
                }
                match_tokens(&tokens, text, *case)
            }
        }
    }
}

/// `key` or `key, 'default'` (whitespace around either allowed).
fn parse_variable(inner: &str) -> Option<Part> {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let default = default.strip_prefix('\'')?.strip_suffix('\'')?;
            (key.trim(), Some(default.into()))
        }
        None => (inner, None),
    };
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || "${}".contains(c)) {
        return None;
    }
    Some(Part::Var {
        key: key.to_ascii_lowercase().into_boxed_str(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::principal::Principal;

    const GLOB_VARS: Syntax = Syntax {
        wildcards: true,
        variables: true,
    };

    fn matches(src: &str, syntax: Syntax, text: &str, ctx: &Context) -> bool {
        Template::compile(src, syntax, Case::Sensitive).matches(text, &Env::new(ctx, None))
    }

    #[test]
    fn without_variables_it_is_a_plain_pattern() {
        let t = Template::compile("arn:*:x", GLOB_VARS, Case::Sensitive);
        assert!(matches!(t, Template::Static(_)));
    }

    #[test]
    fn substitutes_context_keys() {
        let ctx = Context::new().with("aws:username", "alice");
        let src = "arn:aws:iam::*:user/${aws:username}";
        assert!(matches(src, GLOB_VARS, "arn:aws:iam::1:user/alice", &ctx));
        assert!(!matches(src, GLOB_VARS, "arn:aws:iam::1:user/bob", &ctx));
        assert!(!matches(src, GLOB_VARS, "arn:aws:iam::1:user/alice2", &ctx));
        // Key names are case-insensitive.
        assert!(matches("${AWS:UserName}/*", GLOB_VARS, "alice/x", &ctx));
    }

    #[test]
    fn substitutes_principal_keys() {
        let user = Principal::user("123456789012", "carol");
        let ctx = Context::new();
        let t = Template::compile("user/${aws:username}", GLOB_VARS, Case::Sensitive);
        assert!(t.matches("user/carol", &Env::new(&ctx, Some(&user))));
    }

    #[test]
    fn substituted_text_is_literal() {
        let ctx = Context::new().with("a:k", "x*");
        assert!(matches("p/${a:k}", GLOB_VARS, "p/x*", &ctx));
        assert!(!matches("p/${a:k}", GLOB_VARS, "p/xyz", &ctx));
    }

    #[test]
    fn missing_variable_matches_nothing_unless_defaulted() {
        let ctx = Context::new();
        assert!(!matches("p/${a:k}", GLOB_VARS, "p/", &ctx));
        assert!(!matches("*${a:k}", GLOB_VARS, "anything", &ctx));
        assert!(matches("p/${a:k, 'none'}", GLOB_VARS, "p/none", &ctx));
        let many = Context::new().with("a:k", "1").with("a:k", "2");
        assert!(!matches("p/${a:k}", GLOB_VARS, "p/1", &many));
    }

    #[test]
    fn escapes() {
        let ctx = Context::new();
        assert!(matches("a${*}b", GLOB_VARS, "a*b", &ctx));
        assert!(!matches("a${*}b", GLOB_VARS, "axb", &ctx));
        assert!(matches("a${?}b${$}", GLOB_VARS, "a?b$", &ctx));
    }

    #[test]
    fn not_a_variable_is_text() {
        let ctx = Context::new();
        assert!(matches("a${}b", GLOB_VARS, "a${}b", &ctx));
        assert!(matches("a${b", GLOB_VARS, "a${b", &ctx));
        assert!(matches("a${x y}*", GLOB_VARS, "a${x y}zz", &ctx));
    }

    #[test]
    fn variables_off_in_old_documents() {
        let ctx = Context::new().with("aws:username", "alice");
        let old = Syntax {
            wildcards: true,
            variables: false,
        };
        assert!(matches("u/${aws:username}", old, "u/${aws:username}", &ctx));
        assert!(!matches("u/${aws:username}", old, "u/alice", &ctx));
    }

    #[test]
    fn literal_values_with_variables() {
        let ctx = Context::new().with("a:k", "v");
        let exact = Syntax {
            wildcards: false,
            variables: true,
        };
        assert!(matches("*${a:k}", exact, "*v", &ctx));
        assert!(!matches("*${a:k}", exact, "xv", &ctx));
        let t = Template::compile("${a:k}-X", exact, Case::Insensitive);
        assert!(t.matches("V-x", &Env::new(&ctx, None)));
    }
}

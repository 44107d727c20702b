//! IAM's wildcard language, used for actions, resources and the `*Like` / `Arn*` condition
//! operators.
//!
//! IAM has exactly one wildcard language: `*` matches any run of characters (including
//! none) and `?` matches exactly one character. It is deliberately *not* a path glob: `*`
//! spans `:` and `/`. AWS documents that a `*` ending an ARN segment "can expand to match
//! beyond colon boundaries", which is what lets `arn:aws:lambda:*:*:function:f*` cover the
//! qualified `arn:aws:lambda:us-east-1:1:function:foo:live`, while the wildcard-free
//! `...:function:foo` names only the unqualified function and does not match
//! `...:function:foo:live`.
//!
//! Actions compare case-insensitively (`lambda:invokefunction` is `lambda:InvokeFunction`);
//! ARNs and `StringLike` compare case-sensitively. That choice is a [`Case`].
//!
//! Why no regex: policies are evaluated on every API call, so a pattern is compiled once
//! (when its document is parsed) into literal runs and wildcards, the common shapes
//! (`*`, exact, `prefix*`) take a fast path, and the general case is the classic
//! two-pointer scan with a single backtrack point: no allocation, and never exponential.

/// Whether letters must match in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    /// `A` matches only `A` (ARNs, `StringLike`, `StringEquals`).
    Sensitive,
    /// `A` matches `a` (actions, `StringEqualsIgnoreCase`). Letters are compared one
    /// character at a time with Unicode's simple lower-casing.
    Insensitive,
}

/// One compiled piece of a pattern. `S` is the literal's storage: owned in a compiled
/// [`Pattern`], borrowed when a policy variable has just been substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token<S> {
    /// Characters that must appear as they are (subject to [`Case`]).
    Lit(S),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

impl Token<Box<str>> {
    /// The same token, borrowing its literal.
    pub(crate) fn as_borrowed(&self) -> Token<&str> {
        match self {
            Token::Lit(s) => Token::Lit(s),
            Token::Star => Token::Star,
            Token::One => Token::One,
        }
    }
}

/// The shape of a compiled pattern, for the fast paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `*`: matches everything.
    Any,
    /// No wildcards: one literal (possibly empty).
    Exact,
    /// A literal followed by a single trailing `*`.
    Prefix,
    /// Anything else.
    General,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Box<[Token<Box<str>>]>,
    case: Case,
    shape: Shape,
}

impl Pattern {
    /// Compiles `source` with `*` and `?` as wildcards.
    pub fn glob(source: &str, case: Case) -> Self {
        let mut builder = TokenBuilder::default();
        for c in source.chars() {
            match c {
                '*' => builder.star(),
                '?' => builder.one(),
                c => builder.push(c),
            }
        }
        Self::from_tokens(builder.finish(), case)
    }

    /// Compiles `source` as plain text: `*` and `?` match only themselves.
    pub fn literal(source: &str, case: Case) -> Self {
        let tokens = if source.is_empty() {
            Vec::new()
        } else {
            vec![Token::Lit(source.into())]
        };
        Self::from_tokens(tokens, case)
    }

    /// Builds a pattern from tokens that are already normalized (see [`TokenBuilder`]).
    pub(crate) fn from_tokens(tokens: Vec<Token<Box<str>>>, case: Case) -> Self {
        let shape = match tokens.as_slice() {
            [Token::Star] => Shape::Any,
            [] | [Token::Lit(_)] => Shape::Exact,
            [Token::Lit(_), Token::Star] => Shape::Prefix,
            _ => Shape::General,
        };
        Self {
            tokens: tokens.into_boxed_slice(),
            case,
            shape,
        }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match (self.shape, &*self.tokens) {
            (Shape::Any, _) => true,
            (Shape::Exact, []) => text.is_empty(),
            (Shape::Exact, [Token::Lit(lit)]) => {
                eat_literal(text, lit, self.case) == Some(text.len())
            }
            (Shape::Prefix, [Token::Lit(lit), Token::Star]) => {
                eat_literal(text, lit, self.case).is_some()
            }
            _ => match_tokens(&self.tokens, text, self.case),
        }
    }

    /// Whether this pattern is `*` (matches everything).
    pub fn matches_everything(&self) -> bool {
        self.shape == Shape::Any
    }

    /// The letter-case rule this pattern was compiled with.
    pub fn case(&self) -> Case {
        self.case
    }
}

/// Accumulates characters and wildcards into normalized tokens: adjacent literal
/// characters form one literal, and runs of `*` collapse into one.
#[derive(Debug, Default)]
pub(crate) struct TokenBuilder {
    tokens: Vec<Token<Box<str>>>,
    literal: String,
}

impl TokenBuilder {
    pub(crate) fn push(&mut self, c: char) {
        self.literal.push(c);
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        self.literal.push_str(s);
    }

    pub(crate) fn star(&mut self) {
        self.flush();
        if self.tokens.last() != Some(&Token::Star) {
            self.tokens.push(Token::Star);
        }
    }

    pub(crate) fn one(&mut self) {
        self.flush();
        self.tokens.push(Token::One);
    }

    /// Ends the current literal run (if any) so a non-token item can follow.
    pub(crate) fn flush(&mut self) {
        if !self.literal.is_empty() {
            let literal = std::mem::take(&mut self.literal);
            self.tokens.push(Token::Lit(literal.into_boxed_str()));
        }
    }

    /// Takes the tokens gathered so far, leaving the builder empty.
    pub(crate) fn take(&mut self) -> Vec<Token<Box<str>>> {
        self.flush();
        std::mem::take(&mut self.tokens)
    }

    pub(crate) fn finish(mut self) -> Vec<Token<Box<str>>> {
        self.take()
    }
}

/// Matches `text` against a token sequence (the general case).
///
/// Greedy scan with one backtrack point, the last `*` seen: on a mismatch the `*` absorbs
/// one more character and matching resumes after it. Treating a literal run as a unit is
/// equivalent to matching its characters one by one, so this is the textbook algorithm and
/// runs in O(len(text) × len(pattern)) at worst, linear for typical policies.
pub(crate) fn match_tokens<S: AsRef<str>>(tokens: &[Token<S>], text: &str, case: Case) -> bool {
    let mut t = 0; // next token
    let mut i = 0; // next byte of text
                   // After the last `*`: the token following it, and where in the text that token was
                   // last tried.
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(t) {
            let advanced = match token {
                Token::Star => {
                    if t + 1 == tokens.len() {
                        return true; // a trailing `*` swallows the rest
                    }
                    backtrack = Some((t + 1, i));
                    t += 1;
                    continue;
                }
                Token::One => text[i..].chars().next().map(char::len_utf8),
                Token::Lit(lit) => eat_literal(&text[i..], lit.as_ref(), case),
            };
            if let Some(n) = advanced {
                i += n;
                t += 1;
                continue;
            }
        } else if i == text.len() {
            return true;
        }
        // Mismatch: let the last `*` take one more character, or fail.
        let Some((after_star, tried_at)) = backtrack else {
            return false;
        };
        let Some(c) = text[tried_at..].chars().next() else {
            return false;
        };
        let next = tried_at + c.len_utf8();
        backtrack = Some((after_star, next));
        t = after_star;
        i = next;
    }
}

/// If `text` starts with `literal` (under `case`), how many bytes of `text` it covers.
pub(crate) fn eat_literal(text: &str, literal: &str, case: Case) -> Option<usize> {
    match case {
        Case::Sensitive => text.starts_with(literal).then_some(literal.len()),
        Case::Insensitive => {
            let bytes = text.as_bytes();
            if literal.is_ascii() && bytes.len() >= literal.len() {
                let head = &bytes[..literal.len()];
                // An ASCII literal can only equal ASCII text byte for byte (ignoring case),
                // so a match here also ends on a character boundary.
                if head.is_ascii() {
                    return head
                        .eq_ignore_ascii_case(literal.as_bytes())
                        .then_some(literal.len());
                }
            }
            let mut rest = text.chars();
            for want in literal.chars() {
                let got = rest.next()?;
                if !chars_eq_ignore_case(want, got) {
                    return None;
                }
            }
            Some(text.len() - rest.as_str().len())
        }
    }
}

/// Case-insensitive equality of two characters (simple lower-casing).
pub(crate) fn chars_eq_ignore_case(a: char, b: char) -> bool {
    a == b
        || if a.is_ascii() && b.is_ascii() {
            a.eq_ignore_ascii_case(&b)
        } else {
            a.to_lowercase().eq(b.to_lowercase())
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str, t: &str) -> bool {
        Pattern::glob(p, Case::Sensitive).matches(t)
    }

    fn glob_ci(p: &str, t: &str) -> bool {
        Pattern::glob(p, Case::Insensitive).matches(t)
    }

    #[test]
    fn star_alone_matches_everything() {
        assert!(glob("*", ""));
        assert!(glob("*", "arn:aws:lambda:us-east-1:1:function:f"));
        assert!(Pattern::glob("**", Case::Sensitive).matches_everything());
    }

    #[test]
    fn exact_and_empty() {
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("abc", "ab"));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
    }

    #[test]
    fn star_spans_colons_and_slashes() {
        let p = "arn:aws:lambda:*:*:function:f*";
        assert!(glob(p, "arn:aws:lambda:us-east-1:1:function:foo:live"));
        assert!(glob(p, "arn:aws:lambda:us-east-1:123456789012:function:f"));
        assert!(!glob(p, "arn:aws:lambda:us-east-1:1:function:bar"));
        assert!(glob("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b/c"));
        assert!(glob("arn:*", "arn:aws:iam::1:user/a/b"));
    }

    #[test]
    fn unqualified_arn_does_not_match_qualified() {
        let p = "arn:aws:lambda:us-east-1:1:function:foo";
        assert!(glob(p, "arn:aws:lambda:us-east-1:1:function:foo"));
        assert!(!glob(p, "arn:aws:lambda:us-east-1:1:function:foo:live"));
        assert!(glob(
            &format!("{p}:*"),
            "arn:aws:lambda:us-east-1:1:function:foo:live"
        ));
        assert!(!glob(&format!("{p}:*"), p));
    }

    #[test]
    fn question_mark_is_exactly_one_char() {
        assert!(glob("?etFunction", "GetFunction"));
        assert!(glob("?etFunction", "SetFunction"));
        assert!(!glob("?etFunction", "etFunction"));
        assert!(!glob("?etFunction", "GGetFunction"));
        assert!(glob("a?c", "aéc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("??", "éé"));
    }

    #[test]
    fn needs_backtracking() {
        assert!(glob("*a*b", "xxaxxbxxb"));
        assert!(glob("a*b*c", "abbbcbc"));
        assert!(!glob("a*b*c", "abbbcb"));
        assert!(glob("*ab", "aab"));
        assert!(glob("*?b", "ab"));
        assert!(!glob("*?b", "b"));
        assert!(glob("*é*", "xxéyy"));
        assert!(glob("a**b", "ab"));
        assert!(glob("*:live", "arn:f:live"));
        assert!(!glob("*:live", "arn:f:live2"));
    }

    #[test]
    fn prefix_shape() {
        assert!(glob("lambda:*", "lambda:"));
        assert!(glob("lambda:*", "lambda:Invoke"));
        assert!(!glob("lambda:*", "lambd"));
    }

    #[test]
    fn case_rules() {
        assert!(!glob("lambda:GetFunction", "lambda:getfunction"));
        assert!(glob_ci("lambda:GetFunction", "LAMBDA:getfunction"));
        assert!(glob_ci("lambda:Invoke*", "lambda:invokefunction"));
        assert!(glob_ci("Lambda:?ETFUNCTION", "lambda:GetFunction"));
        assert!(glob_ci("straße*", "STRAßE-1"));
        assert!(glob_ci("ÉTÉ", "été"));
        assert!(!glob_ci("ÉTÉ", "ete"));
    }

    #[test]
    fn literal_patterns_ignore_wildcards() {
        let p = Pattern::literal("a*b", Case::Sensitive);
        assert!(p.matches("a*b"));
        assert!(!p.matches("axxb"));
        assert!(Pattern::literal("", Case::Sensitive).matches(""));
    }
}

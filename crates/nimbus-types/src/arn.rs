//! The forms in which Lambda accepts a function name, and its ARNs.
//!
//! `name`, `name:qualifier`, `ACCOUNT:function:name[:qualifier]` and
//! `arn:aws:lambda:REGION:ACCOUNT:function:name[:qualifier]`.

use crate::error::MetaError;
use crate::validate;

/// A function reference as the user wrote it, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub qualifier: Option<String>,
}

/// Parses any accepted form of a function name.
pub fn parse_function_ref(input: &str) -> Result<FunctionRef, MetaError> {
    let invalid = || {
        MetaError::validation(format!(
            "1 validation error detected: Value '{input}' at 'functionName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{{2}}(-gov)?-[a-z]+-\\d{{1}}:)?(\\d{{12}}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"
        ))
    };
    let parts: Vec<&str> = input.split(':').collect();
    let (account_id, region, rest): (Option<&str>, Option<&str>, &[&str]) = match parts.as_slice() {
        ["arn", partition, "lambda", region, account, "function", rest @ ..]
            if partition.starts_with("aws") =>
        {
            (Some(account), Some(region), rest)
        }
        [account, "function", rest @ ..] => (Some(account), None, rest),
        rest => (None, None, rest),
    };
    let (name, qualifier) = match rest {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        _ => return Err(invalid()),
    };
    validate::function_name(name).map_err(|_| invalid())?;
    if let Some(a) = account_id {
        validate::account_id(a).map_err(|_| invalid())?;
    }
    if let Some(r) = region {
        validate::region(r).map_err(|_| invalid())?;
    }
    if let Some(q) = qualifier {
        if q != crate::Qualifier::LATEST
            && !q
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || q.is_empty()
        {
            return Err(invalid());
        }
    }
    Ok(FunctionRef {
        name: name.to_string(),
        account_id: account_id.map(str::to_string),
        region: region.map(str::to_string),
        qualifier: qualifier.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_forms_parse() {
        let plain = parse_function_ref("my-fn").unwrap();
        assert_eq!((plain.name.as_str(), plain.qualifier), ("my-fn", None));
        let q = parse_function_ref("my-fn:prod").unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("prod"));
        let partial = parse_function_ref("123456789012:function:my-fn:7").unwrap();
        assert_eq!(partial.account_id.as_deref(), Some("123456789012"));
        assert_eq!(partial.qualifier.as_deref(), Some("7"));
        let full =
            parse_function_ref("arn:aws:lambda:eu-west-1:123456789012:function:my-fn:$LATEST")
                .unwrap();
        assert_eq!(full.region.as_deref(), Some("eu-west-1"));
        assert_eq!(full.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn malformed_forms_fail() {
        for bad in [
            "",
            "a:b:c:d",
            "arn:aws:lambda:nowhere:123:function:x",
            "bad name",
            "f:",
        ] {
            assert!(parse_function_ref(bad).is_err(), "{bad} should fail");
        }
    }
}

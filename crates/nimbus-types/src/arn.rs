//! The forms in which Lambda accepts a function name, and its ARNs.
//!
//! `name`, `name:qualifier`, `ACCOUNT:function:name[:qualifier]` and
//! `arn:aws:lambda:REGION:ACCOUNT:function:name[:qualifier]`.

use crate::error::MetaError;
use crate::model::LayerKey;
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

/// A layer named in a request path (`LayerName`): a plain name in the caller's account
/// and region, or a layer ARN (`arn:aws:lambda:REGION:ACCOUNT:layer:NAME`).
pub fn parse_layer_name(
    input: &str,
    account_id: &str,
    region: &str,
) -> Result<LayerKey, MetaError> {
    let invalid = || {
        MetaError::validation(format!(
            "1 validation error detected: Value '{input}' at 'layerName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+"
        ))
    };
    if input.len() > 140 {
        return Err(invalid());
    }
    let key = match input.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, "lambda", region, account, "layer", name]
            if partition.starts_with("aws") =>
        {
            validate::account_id(account).map_err(|_| invalid())?;
            validate::region(region).map_err(|_| invalid())?;
            LayerKey::new(account, region, name)
        }
        [name] => LayerKey::new(account_id, region, name),
        _ => return Err(invalid()),
    };
    if !is_layer_name(&key.name) {
        return Err(invalid());
    }
    Ok(key)
}

/// A layer version ARN (`arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`), as `Layers`
/// and `GetLayerVersionByArn` take it; `None` when it is not one.
pub fn parse_layer_version_arn(arn: &str) -> Option<(LayerKey, u64)> {
    if arn.len() > 140 {
        return None;
    }
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, "lambda", region, account, "layer", name, version]
            if partition.starts_with("aws")
                && validate::account_id(account).is_ok()
                && validate::region(region).is_ok()
                && is_layer_name(name)
                && !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let n = version.parse().ok().filter(|n| *n > 0)?;
            Some((LayerKey::new(account, region, name), n))
        }
        _ => None,
    }
}

fn is_layer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_and_version_arns() {
        let k = parse_layer_name("my_layer-1", "123456789012", "us-east-1").unwrap();
        assert_eq!(
            k.arn(),
            "arn:aws:lambda:us-east-1:123456789012:layer:my_layer-1"
        );
        let other = parse_layer_name(
            "arn:aws:lambda:eu-west-1:210987654321:layer:shared",
            "1",
            "x",
        )
        .unwrap();
        assert_eq!(
            (other.account_id.as_str(), other.region.as_str()),
            ("210987654321", "eu-west-1")
        );
        for bad in [
            "",
            "has space",
            "a:b",
            "arn:aws:lambda:eu-west-1:12:layer:x",
            &"n".repeat(65),
        ] {
            assert!(
                parse_layer_name(bad, "123456789012", "us-east-1").is_err(),
                "{bad:?}"
            );
        }
        let (k, n) =
            parse_layer_version_arn("arn:aws:lambda:us-east-1:123456789012:layer:deps:3").unwrap();
        assert_eq!((k.name.as_str(), n), ("deps", 3));
        for bad in [
            "arn:aws:lambda:us-east-1:123456789012:layer:deps",
            "arn:aws:lambda:us-east-1:123456789012:layer:deps:0",
            "arn:aws:lambda:us-east-1:123456789012:layer:deps:x",
            "arn:aws:lambda:us-east-1:123456789012:function:deps:1",
            "arn:aws:lambda:us-east-1:1234:layer:deps:1",
        ] {
            assert!(parse_layer_version_arn(bad).is_none(), "{bad}");
        }
    }

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

use serde_json::json;

use super::*;

fn cond(v: Value) -> Condition {
    Condition::parse(&v, true).unwrap_or_else(|e| panic!("{v} should parse: {e:?}"))
}

fn ctx(pairs: &[(&str, &str)]) -> Context {
    pairs
        .iter()
        .fold(Context::new(), |c, (k, v)| c.with(k, v.to_string()))
}

fn holds(v: Value, pairs: &[(&str, &str)]) -> bool {
    cond(v).matches(&ctx(pairs))
}

#[test]
fn empty_condition_holds() {
    assert!(holds(json!({}), &[]));
    assert!(cond(json!({})).is_empty());
}

#[test]
fn string_equals() {
    let c = json!({"StringEquals": {"aws:SourceAccount": ["111111111111", "222222222222"]}});
    assert!(holds(c.clone(), &[("aws:SourceAccount", "222222222222")]));
    assert!(!holds(c.clone(), &[("aws:SourceAccount", "333333333333")]));
    assert!(
        !holds(c.clone(), &[]),
        "missing key: positive operator is false"
    );
    // Case-sensitive values, case-insensitive keys.
    let c = json!({"StringEquals": {"aws:username": "Alice"}});
    assert!(holds(c.clone(), &[("AWS:USERNAME", "Alice")]));
    assert!(!holds(c.clone(), &[("aws:username", "alice")]));
    // No wildcards in StringEquals.
    assert!(!holds(
        json!({"StringEquals": {"a:k": "x*"}}),
        &[("a:k", "xy")]
    ));
    assert!(holds(
        json!({"StringEquals": {"a:k": "x*"}}),
        &[("a:k", "x*")]
    ));
}

#[test]
fn string_not_equals() {
    let c = json!({"StringNotEquals": {"a:k": ["x", "y"]}});
    assert!(holds(c.clone(), &[("a:k", "z")]));
    assert!(!holds(c.clone(), &[("a:k", "y")]));
    assert!(
        holds(c.clone(), &[]),
        "missing key: negated operator is true"
    );
    // A plain negated operator needs every request value to match none.
    assert!(!holds(c.clone(), &[("a:k", "z"), ("a:k", "x")]));
}

#[test]
fn string_ignore_case() {
    let c = json!({"StringEqualsIgnoreCase": {"lambda:FunctionUrlAuthType": "aws_iam"}});
    assert!(holds(
        c.clone(),
        &[("lambda:FunctionUrlAuthType", "AWS_IAM")]
    ));
    assert!(!holds(c.clone(), &[("lambda:FunctionUrlAuthType", "NONE")]));
    let c = json!({"StringNotEqualsIgnoreCase": {"a:k": "ABC"}});
    assert!(!holds(c.clone(), &[("a:k", "abc")]));
    assert!(holds(c.clone(), &[("a:k", "abd")]));
    assert!(holds(c, &[]));
}

#[test]
fn string_like() {
    let c = json!({"StringLike": {"aws:SourceArn": "arn:aws:s3:::bucket-*"}});
    assert!(holds(
        c.clone(),
        &[("aws:SourceArn", "arn:aws:s3:::bucket-1")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:SourceArn", "arn:aws:s3:::other")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:SourceArn", "arn:aws:s3:::BUCKET-1")]
    ));
    assert!(!holds(c, &[]));
    let c = json!({"StringNotLike": {"a:k": ["a?", "b*"]}});
    assert!(holds(c.clone(), &[("a:k", "abc")]));
    assert!(!holds(c.clone(), &[("a:k", "ab")]));
    assert!(!holds(c.clone(), &[("a:k", "bcd")]));
    assert!(holds(c, &[]));
}

#[test]
fn arn_operators() {
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:f:live";
    for op in ["ArnLike", "ArnEquals"] {
        let c = json!({op: {"aws:SourceArn": "arn:aws:lambda:*:123456789012:function:f*"}});
        assert!(holds(c.clone(), &[("aws:SourceArn", arn)]), "{op}");
        assert!(!holds(
            c.clone(),
            &[("aws:SourceArn", "arn:aws:lambda:us-east-1:1:function:f")]
        ));
        assert!(!holds(c, &[]));
    }
    let c = json!({"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:topic"}});
    assert!(holds(
        c.clone(),
        &[("aws:SourceArn", "arn:aws:sns:us-east-1:1:topic")]
    ));
    assert!(!holds(
        c,
        &[("aws:SourceArn", "arn:aws:sns:us-east-1:1:topic2")]
    ));
    for op in ["ArnNotLike", "ArnNotEquals"] {
        let c = json!({op: {"aws:SourceArn": "arn:aws:s3:::b*"}});
        assert!(
            holds(c.clone(), &[("aws:SourceArn", "arn:aws:s3:::c")]),
            "{op}"
        );
        assert!(!holds(c.clone(), &[("aws:SourceArn", "arn:aws:s3:::bb")]));
        assert!(holds(c, &[]), "{op}: missing key");
    }
}

#[test]
fn numeric_operators() {
    let n = |op: &str, policy: Value, request: &str| {
        holds(json!({op: {"a:n": policy}}), &[("a:n", request)])
    };
    assert!(n("NumericEquals", json!(10), "10"));
    assert!(n("NumericEquals", json!("10"), "10.0"));
    assert!(!n("NumericEquals", json!(10), "11"));
    assert!(n("NumericNotEquals", json!(10), "11"));
    assert!(!n("NumericNotEquals", json!(10), "10"));
    assert!(n("NumericLessThan", json!(10), "9"));
    assert!(!n("NumericLessThan", json!(10), "10"));
    assert!(n("NumericLessThanEquals", json!(10), "10"));
    assert!(n("NumericGreaterThan", json!(10), "10.5"));
    assert!(!n("NumericGreaterThan", json!(10), "10"));
    assert!(n("NumericGreaterThanEquals", json!(10), "10"));
    assert!(
        n("NumericLessThan", json!(["1", "100"]), "50"),
        "values are OR'd"
    );
    assert!(!n("NumericEquals", json!(10), "ten"));
    assert!(!n("NumericEquals", json!("ten"), "10"));
    assert!(!holds(json!({"NumericEquals": {"a:n": 1}}), &[]));
    assert!(holds(json!({"NumericNotEquals": {"a:n": 1}}), &[]));
    assert!(!n("NumericEquals", json!("inf"), "inf"));
}

#[test]
fn date_operators() {
    let d = |op: &str, request: &str| {
        holds(
            json!({op: {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}),
            &[("aws:CurrentTime", request)],
        )
    };
    assert!(d("DateEquals", "2020-01-01T00:00:00Z"));
    assert!(d("DateEquals", "1577836800"));
    assert!(d("DateNotEquals", "2020-01-01T00:00:01Z"));
    assert!(d("DateLessThan", "2019-12-31T23:59:59Z"));
    assert!(!d("DateLessThan", "2020-01-01T00:00:00Z"));
    assert!(d("DateLessThanEquals", "2020-01-01T01:00:00+01:00"));
    assert!(d("DateGreaterThan", "2020-01-01T00:00:00.001Z"));
    assert!(d("DateGreaterThanEquals", "2020-01-01"));
    assert!(!d("DateGreaterThan", "not a date"));
    assert!(!holds(
        json!({"DateLessThan": {"aws:CurrentTime": "2020-01-01"}}),
        &[]
    ));
}

#[test]
fn bool_operator() {
    let c = json!({"Bool": {"aws:SecureTransport": false}});
    assert!(holds(c.clone(), &[("aws:SecureTransport", "false")]));
    assert!(holds(c.clone(), &[("aws:SecureTransport", "FALSE")]));
    assert!(!holds(c.clone(), &[("aws:SecureTransport", "true")]));
    assert!(!holds(c.clone(), &[]));
    let c = json!({"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}});
    assert!(holds(c.clone(), &[]));
    assert!(holds(c.clone(), &[("aws:MultiFactorAuthPresent", "false")]));
    assert!(!holds(c, &[("aws:MultiFactorAuthPresent", "true")]));
}

#[test]
fn null_operator() {
    let absent = json!({"Null": {"aws:SourceArn": "true"}});
    assert!(holds(absent.clone(), &[]));
    assert!(!holds(absent, &[("aws:SourceArn", "x")]));
    let present = json!({"Null": {"aws:SourceArn": false}});
    assert!(!holds(present.clone(), &[]));
    assert!(holds(present, &[("aws:SourceArn", "x")]));
}

#[test]
fn if_exists() {
    let c = json!({"StringEqualsIfExists": {"a:k": "v"}});
    assert!(holds(c.clone(), &[]));
    assert!(holds(c.clone(), &[("a:k", "v")]));
    assert!(!holds(c.clone(), &[("a:k", "w")]));
    let c = json!({"ArnLikeIfExists": {"aws:SourceArn": "arn:aws:s3:::b"}});
    assert!(holds(c.clone(), &[]));
    assert!(!holds(c, &[("aws:SourceArn", "arn:aws:s3:::c")]));
    let c = json!({"NumericLessThanIfExists": {"a:n": 5}});
    assert!(holds(c.clone(), &[]));
    assert!(!holds(c, &[("a:n", "6")]));
}

#[test]
fn for_any_value() {
    let c = json!({"ForAnyValue:StringEquals": {"aws:TagKeys": ["Env", "Team"]}});
    assert!(holds(
        c.clone(),
        &[("aws:TagKeys", "Cost"), ("aws:TagKeys", "Team")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:TagKeys", "Cost"), ("aws:TagKeys", "Owner")]
    ));
    assert!(!holds(c, &[]), "ForAnyValue is false for a missing key");
    let c = json!({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "Env"}});
    assert!(holds(c, &[]));
    // Negated: some request value is outside the policy's set.
    let c = json!({"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["Env", "Team"]}});
    assert!(holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "Cost")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "Team")]
    ));
    assert!(!holds(c, &[]));
}

#[test]
fn for_all_values() {
    let c = json!({"ForAllValues:StringLike": {"aws:TagKeys": ["Env", "team-*"]}});
    assert!(holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "team-a")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "Cost")]
    ));
    assert!(holds(c, &[]), "ForAllValues is true for a missing key");
    let c = json!({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["Secret"]}});
    assert!(holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "Team")]
    ));
    assert!(!holds(
        c.clone(),
        &[("aws:TagKeys", "Env"), ("aws:TagKeys", "Secret")]
    ));
    assert!(holds(c, &[]));
}

#[test]
fn operators_and_keys_are_anded() {
    let c = json!({
        "StringEquals": {"aws:SourceAccount": "111111111111", "aws:username": "alice"},
        "Bool": {"aws:SecureTransport": "true"}
    });
    let all = [
        ("aws:SourceAccount", "111111111111"),
        ("aws:username", "alice"),
        ("aws:SecureTransport", "true"),
    ];
    assert!(holds(c.clone(), &all));
    for skip in 0..all.len() {
        let fewer: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, p)| *p)
            .collect();
        assert!(!holds(c.clone(), &fewer), "without {:?}", all[skip]);
    }
    let mut keys: Vec<_> = cond(c).keys().map(str::to_string).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["aws:securetransport", "aws:sourceaccount", "aws:username"]
    );
}

#[test]
fn ip_and_binary() {
    let c = json!({"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:db8::/32"]}});
    assert!(holds(c.clone(), &[("aws:SourceIp", "203.0.113.5")]));
    assert!(holds(c.clone(), &[("aws:SourceIp", "2001:db8::5")]));
    assert!(!holds(c.clone(), &[("aws:SourceIp", "198.51.100.1")]));
    let c = json!({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}});
    assert!(holds(c.clone(), &[("aws:SourceIp", "198.51.100.1")]));
    assert!(!holds(c, &[("aws:SourceIp", "203.0.113.5")]));
    let c = json!({"BinaryEquals": {"a:b": "QmluYXJ5"}});
    assert!(holds(c.clone(), &[("a:b", "QmluYXJ5")]));
    assert!(!holds(c, &[("a:b", "qmluyxj5")]));
}

#[test]
fn policy_variables_in_values() {
    let c = json!({"StringEquals": {"a:owner": "${aws:username}"}});
    assert!(holds(
        c.clone(),
        &[("a:owner", "alice"), ("aws:username", "alice")]
    ));
    assert!(!holds(
        c.clone(),
        &[("a:owner", "alice"), ("aws:username", "bob")]
    ));
    // Not in 2008-10-17 documents.
    let old = Condition::parse(&c, false).unwrap();
    assert!(!old.matches(&ctx(&[("a:owner", "alice"), ("aws:username", "alice")])));
    assert!(old.matches(&ctx(&[("a:owner", "${aws:username}")])));
}

#[test]
fn parse_errors() {
    let syntax = |v: Value| Condition::parse(&v, true).unwrap_err() == ConditionError::Syntax;
    assert!(syntax(json!([])));
    assert!(syntax(json!("a")));
    assert!(syntax(json!({"StringEquals": "b"})));
    assert!(syntax(json!({"StringEquals": []})));
    assert!(syntax(json!({"StringEquals": {"a:k": {}}})));
    assert!(syntax(json!({"StringEquals": {"a:k": null}})));
    assert!(syntax(json!({"StringEquals": {"a:k": [[]]}})));
    assert!(syntax(json!({"StringEqualz": {"a:k": "v"}})));
    assert!(syntax(json!({"stringequals": {"a:k": "v"}})));
    assert!(syntax(
        json!({"ForAnyValue::StringEqualsIfExists": {"a": "asf"}})
    ));
    assert!(syntax(json!({"ForSomeValues:StringEquals": {"a": "asf"}})));
    assert_eq!(
        Condition::parse(&json!({"DateGreaterThan": {"a:d": "sdfdsf"}}), true),
        Err(ConditionError::Legacy)
    );
    // IAM accepts an unknown operator with nothing under it.
    assert!(Condition::parse(&json!({"x": {}, "y": {}}), true)
        .unwrap()
        .is_empty());
    // And empty value lists.
    assert!(Condition::parse(&json!({"DateGreaterThan": {"a": []}}), true).is_ok());
}

#[test]
fn every_operator_name_parses_with_qualifiers() {
    for (name, _, _) in OPERATORS {
        for prefix in ["", "ForAnyValue:", "ForAllValues:"] {
            for suffix in ["", "IfExists"] {
                let op = format!("{prefix}{name}{suffix}");
                let value = if name.starts_with("Date") {
                    "2020-01-01"
                } else {
                    "1"
                };
                assert!(
                    Condition::parse(&json!({op.clone(): {"a:k": value}}), true).is_ok(),
                    "{op}"
                );
            }
        }
    }
}

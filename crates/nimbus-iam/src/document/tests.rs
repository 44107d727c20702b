use serde_json::{json, Value};

use super::*;

fn parse(v: Value) -> Result<PolicyDocument, PolicyError> {
    PolicyDocument::parse(&v.to_string())
}

fn parse_as(v: Value, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
    PolicyDocument::parse_as(&v.to_string(), kind)
}

fn error(v: Value) -> String {
    match parse(v.clone()) {
        Err(PolicyError::Malformed(m)) => m,
        Ok(_) => panic!("{v} should be malformed"),
    }
}

fn error_as(v: Value, kind: PolicyKind) -> String {
    match parse_as(v.clone(), kind) {
        Err(PolicyError::Malformed(m)) => m,
        Ok(_) => panic!("{v} should be malformed as {kind:?}"),
    }
}

/// A valid document around one statement.
fn doc(statement: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statement})
}

fn allow_list() -> Value {
    json!({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"})
}

const SYNTAX: &str = "Syntax errors in policy.";
const LEGACY: &str = "The policy failed legacy parsing";

#[test]
fn single_statement_object() {
    let d = parse(doc(allow_list())).unwrap();
    assert_eq!(d.statements().len(), 1);
    assert_eq!(d.version(), Version::V2012_10_17);
    let s = &d.statements()[0];
    assert_eq!(s.effect, Effect::Allow);
    assert_eq!(s.sid, None);
    assert!(s.matches_action("s3:listbucket"));
    assert!(s.has_resource());
    assert!(!s.has_principal());
    assert!(s.condition().is_empty());
}

#[test]
fn statement_arrays_and_lists() {
    let d = parse(json!({
        "Version": "2012-10-17",
        "Id": "policy-1",
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*"],
             "Resource": ["arn:aws:lambda:*:*:function:a", "arn:aws:lambda:*:*:function:b"]},
            {"Sid": "B", "Effect": "Deny", "NotAction": "iam:*", "NotResource": "*"},
            {"Sid": "", "Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "Action": "*", "Resource": "*"}
        ]
    }))
    .unwrap();
    assert_eq!(d.id(), Some("policy-1"));
    assert_eq!(d.statements().len(), 4);
    assert_eq!(d.sids().collect::<Vec<_>>(), ["A", "B"]);
    let deny = &d.statements()[1];
    assert_eq!(deny.effect, Effect::Deny);
    assert!(deny.matches_action("lambda:InvokeFunction"));
    assert!(!deny.matches_action("IAM:CreateRole"));
}

#[test]
fn version_defaults_to_2008() {
    let d = parse(json!({"Statement": allow_list()})).unwrap();
    assert_eq!(d.version(), Version::V2008_10_17);
    assert_eq!(d.version().as_str(), "2008-10-17");
    let d = parse(json!({"Version": "2008-10-17", "Statement": allow_list()})).unwrap();
    assert_eq!(d.version(), Version::V2008_10_17);
}

#[test]
fn principals_and_conditions_parse() {
    let d = parse(doc(json!([
        {"Sid": "p1", "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction",
         "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f"},
        {"Sid": "p2", "Effect": "Allow",
         "Principal": {"AWS": ["123456789012", "arn:aws:iam::123456789012:user/alice"],
                       "Service": "s3.amazonaws.com"},
         "Action": "lambda:InvokeFunction", "Resource": "*",
         "Condition": {
             "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::b"},
             "StringEquals": {"aws:SourceAccount": 123456789012_u64},
             "Bool": {"aws:SecureTransport": true},
             "ForAllValues:StringLike": {"aws:TagKeys": ["a*", "b?"]},
             "NumericLessThanIfExists": {"a:n": 5.5},
             "Null": {"aws:username": "false"}
         }},
        {"Sid": "p3", "Effect": "Deny",
         "NotPrincipal": {"AWS": "arn:aws:sts::123456789012:assumed-role/R/s",
                          "Federated": "cognito-identity.amazonaws.com"},
         "Action": "*", "Resource": "*"}
    ])))
    .unwrap();
    assert!(d.statements().iter().all(Statement::has_principal));
    let mut keys: Vec<_> = d.statements()[1].condition().keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "a:n",
            "aws:securetransport",
            "aws:sourceaccount",
            "aws:sourcearn",
            "aws:tagkeys",
            "aws:username"
        ]
    );
}

#[test]
fn malformed_json_and_shapes() {
    assert_eq!(
        PolicyDocument::parse("This is not a json document"),
        Err(PolicyError::Malformed(SYNTAX.into()))
    );
    assert_eq!(error(json!([])), SYNTAX);
    assert_eq!(error(json!({"Version": "2012-10-17"})), SYNTAX);
    assert_eq!(
        error(json!({"Version": "2012-10-17", "Statement": []})),
        SYNTAX
    );
    assert_eq!(
        error(json!({"Version": "2012-10-17", "Statement": ["afd"]})),
        SYNTAX
    );
    assert_eq!(
        error(json!({"Version": "2012-10-17", "Statement": "x"})),
        SYNTAX
    );
    assert_eq!(
        error(json!({"Version": "2012-10-17", "Id": ["x"], "Statement": allow_list()})),
        SYNTAX
    );
}

#[test]
fn bad_version() {
    assert_eq!(
        error(json!({"Version": "2013-10-17", "Statement": allow_list()})),
        SYNTAX
    );
    assert_eq!(
        error(json!({"Version": 2012, "Statement": allow_list()})),
        SYNTAX
    );
    // Identity policies need the current version.
    let old = "Policy document must be version 2012-10-17 or greater.";
    assert_eq!(
        error_as(json!({"Statement": allow_list()}), PolicyKind::Identity),
        old
    );
    assert_eq!(
        error_as(
            json!({"Version": "2008-10-17", "Statement": allow_list()}),
            PolicyKind::Identity
        ),
        old
    );
    // Resource policies may be old.
    let resource_old = json!({"Version": "2008-10-17", "Statement": {
        "Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunction", "Resource": "*"}});
    assert!(parse_as(resource_old, PolicyKind::Resource).is_ok());
}

#[test]
fn unknown_keys() {
    let mut top = doc(allow_list());
    top["Extra field"] = json!("value");
    assert_eq!(error(top), SYNTAX);
    let mut s = allow_list();
    s["Actions"] = json!("s3:ListBucket");
    assert_eq!(error(doc(s)), SYNTAX);
}

#[test]
fn effect_rules() {
    let mut s = allow_list();
    s.as_object_mut().unwrap().remove("Effect");
    assert_eq!(error(doc(s)), SYNTAX, "missing Effect");
    let mut s = allow_list();
    s["Effect"] = json!("invalid");
    assert_eq!(error(doc(s)), SYNTAX);
    let mut s = allow_list();
    s["Effect"] = json!("denY");
    assert_eq!(
        error(doc(s)),
        LEGACY,
        "IAM's legacy parser wants exact case"
    );
}

#[test]
fn action_rules() {
    let with = |action: Value| {
        let mut s = allow_list();
        s["Action"] = action;
        error(doc(s))
    };
    assert_eq!(with(json!([])), "Policy statement must contain actions.");
    assert_eq!(with(json!(5)), SYNTAX, "non-string action");
    assert_eq!(
        with(json!(["s3:Get", 5])),
        SYNTAX,
        "non-string action in a list"
    );
    assert_eq!(with(json!([[]])), SYNTAX);
    assert_eq!(with(json!({})), SYNTAX);
    assert_eq!(
        with(json!("invalid")),
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
    );
    assert_eq!(
        with(json!("s3:List:Bucket")),
        "Actions/Condition can contain only one colon."
    );
    assert_eq!(with(json!("a a:ListBucket")), "Vendor a a is not valid");
    assert_eq!(with(json!("lam*:Get")), "Vendor lam* is not valid");

    let mut s = allow_list();
    s.as_object_mut().unwrap().remove("Action");
    assert_eq!(error(doc(s)), "Policy statement must contain actions.");

    let mut s = allow_list();
    s["NotAction"] = json!("iam:*");
    assert_eq!(error(doc(s)), SYNTAX, "both Action and NotAction");
}

#[test]
fn resource_rules() {
    let with = |resource: Value| {
        let mut s = allow_list();
        s["Resource"] = resource;
        error(doc(s))
    };
    assert_eq!(
        with(json!("invalid resource")),
        r#"Resource invalid resource must be in ARN format or "*"."#
    );
    assert_eq!(
        with(json!("")),
        r#"Resource  must be in ARN format or "*"."#
    );
    assert_eq!(
        with(json!("a:bsdfdsafsad")),
        r#"Partition "bsdfdsafsad" is not valid for resource "arn:bsdfdsafsad:*:*:*:*"."#
    );
    assert_eq!(
        with(json!("aws:s3:::example_bucket")),
        r#"Partition "s3" is not valid for resource "arn:s3:::example_bucket:*"."#
    );
    assert_eq!(
        with(json!(["arn:error:s3:::example_bucket"])),
        r#"Partition "error" is not valid for resource "arn:error:s3:::example_bucket"."#
    );
    assert_eq!(
        with(json!("arn:aws")),
        "Resource vendor must be fully qualified and cannot contain regexes."
    );
    assert_eq!(with(json!("arn:aws:s3::example_bucket")), LEGACY);
    assert_eq!(with(json!("arn:aws::::example_bucket")), LEGACY);
    assert_eq!(with(json!({"a": "b"})), SYNTAX);

    let mut s = allow_list();
    s["NotResource"] = json!("*");
    assert_eq!(error(doc(s)), SYNTAX, "both Resource and NotResource");

    // Other partitions and short-but-plausible ARNs are fine.
    for ok in [
        "arn:aws-cn:s3:::b",
        "arn:aws:fdsasf",
        "arn:aws:lambda:*:*:function:*",
        "*",
    ] {
        let mut s = allow_list();
        s["Resource"] = json!(ok);
        assert!(parse(doc(s)).is_ok(), "{ok}");
    }
}

#[test]
fn missing_resource_is_allowed_except_in_identity_policies() {
    let s = json!({"Effect": "Allow", "Action": "s3:ListBucket"});
    let d = parse(doc(s.clone())).unwrap();
    assert!(!d.statements()[0].has_resource());
    assert_eq!(
        error_as(doc(s), PolicyKind::Identity),
        "Policy statement must contain resources."
    );
    let empty = json!({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": []});
    assert_eq!(
        error_as(doc(empty), PolicyKind::Identity),
        "Policy statement must contain resources."
    );
}

#[test]
fn duplicate_sids() {
    let s = |sid: &str| json!({"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"});
    assert_eq!(
        error(doc(json!([s("sdf"), s("sdf")]))),
        "Statement IDs (SID) in a single policy must be unique."
    );
    assert!(
        parse(doc(json!([s("a"), s("A")]))).is_ok(),
        "Sids are case-sensitive"
    );
    assert!(
        parse(doc(json!([s(""), s("")]))).is_ok(),
        "empty Sids are not compared"
    );
    let mut bad = s("x");
    bad["Sid"] = json!([]);
    assert_eq!(error(doc(bad)), SYNTAX);
}

#[test]
fn condition_errors() {
    let with = |condition: Value| {
        let mut s = allow_list();
        s["Condition"] = condition;
        error(doc(s))
    };
    assert_eq!(
        with(json!({"StringEqualz": {"a:k": "v"}})),
        SYNTAX,
        "unknown operator"
    );
    assert_eq!(with(json!([])), SYNTAX);
    assert_eq!(with(json!({"StringEquals": "b"})), SYNTAX);
    assert_eq!(with(json!({"StringEquals": {"a:k": null}})), SYNTAX);
    assert_eq!(with(json!({"DateGreaterThan": {"a": "sdfdsf"}})), LEGACY);
}

#[test]
fn principal_errors() {
    let with = |principal: Value| {
        let mut s = allow_list();
        s["Principal"] = principal;
        error(doc(s))
    };
    assert_eq!(
        with(json!({"AWS": "arn:aws:iam::123456789012:group/g"})),
        r#"Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:group/g""#
    );
    assert_eq!(with(json!({"Nope": "x"})), SYNTAX);
    assert_eq!(with(json!("someone")), SYNTAX);
    let mut s = allow_list();
    s["Principal"] = json!("*");
    s["NotPrincipal"] = json!("*");
    assert_eq!(error(doc(s)), SYNTAX);
}

#[test]
fn kind_rules() {
    let with_principal = json!({"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
                                "Resource": "arn:aws:s3:::b"});
    assert_eq!(
        error_as(doc(with_principal.clone()), PolicyKind::Identity),
        "Policy document should not specify a principal."
    );
    assert!(parse_as(doc(with_principal.clone()), PolicyKind::Resource).is_ok());
    assert_eq!(
        error_as(doc(allow_list()), PolicyKind::Resource),
        "Missing required field Principal"
    );
    assert_eq!(
        error_as(doc(allow_list()), PolicyKind::Trust),
        "Missing required field Principal"
    );
    assert_eq!(
        error_as(doc(with_principal), PolicyKind::Trust),
        "Has prohibited field Resource"
    );
    let trust = json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                       "Action": "sts:AssumeRole"});
    assert!(parse_as(doc(trust), PolicyKind::Trust).is_ok());
    assert!(parse_as(doc(allow_list()), PolicyKind::Identity).is_ok());
}

#[test]
fn errors_come_in_iams_order() {
    // Syntax beats everything, even in a later statement.
    let d = doc(json!([{"Effect": "allow", "Action": "x"}, {"Effect": "Allow", "Bad": 1}]));
    assert_eq!(error(d), SYNTAX);
    // Legacy parsing beats duplicate Sids and missing actions.
    let d = doc(
        json!([{"Sid": "a", "Effect": "aLLow", "Action": "s3:ListBucket", "Resource": "*"},
                       {"Sid": "a", "Effect": "Allow"}]),
    );
    assert_eq!(error(d), LEGACY);
    // Duplicate Sids beat missing actions.
    let d = doc(
        json!([{"Sid": "a", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"},
                       {"Sid": "a", "Effect": "Allow"}]),
    );
    assert_eq!(
        error(d),
        "Statement IDs (SID) in a single policy must be unique."
    );
    // Missing actions beat resource format errors, which beat vendor errors.
    let d =
        doc(json!([{"Effect": "Allow", "Action": "nope", "Resource": "nope"}, {"Effect": "Deny"}]));
    assert_eq!(error(d), "Policy statement must contain actions.");
    let d = doc(json!({"Effect": "Allow", "Action": "nope", "Resource": "nope"}));
    assert_eq!(error(d), r#"Resource nope must be in ARN format or "*"."#);
    // For identity policies the version comes right after syntax.
    let d =
        json!({"Statement": [{"Sid": "a", "Effect": "Allow"}, {"Sid": "a", "Effect": "Allow"}]});
    assert_eq!(
        error_as(d, PolicyKind::Identity),
        "Policy document must be version 2012-10-17 or greater."
    );
}

#[test]
fn documents_compare_by_content() {
    let a = parse(doc(allow_list())).unwrap();
    let b =
        PolicyDocument::parse(&serde_json::to_string_pretty(&doc(allow_list())).unwrap()).unwrap();
    assert_eq!(a, b);
    let mut other = allow_list();
    other["Action"] = json!("s3:GetObject");
    assert_ne!(a, parse(doc(other)).unwrap());
}

#[test]
fn error_displays_message() {
    let e = PolicyDocument::parse("{}").unwrap_err();
    assert_eq!(e.to_string(), SYNTAX);
}

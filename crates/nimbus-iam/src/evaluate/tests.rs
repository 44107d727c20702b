use serde_json::{json, Value};

use super::*;
use crate::document::PolicyKind;

const ACCT: &str = "123456789012";
const OTHER: &str = "210987654321";
const FN_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:orders";

fn policy(statements: Value) -> PolicyDocument {
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    PolicyDocument::parse(&doc.to_string()).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

fn req<'a>(p: &'a Principal, action: &'a str, resource: &'a str, ctx: &'a Context) -> Request<'a> {
    Request {
        principal: p,
        action,
        resource,
        context: ctx,
    }
}

fn identity(policies: &[&PolicyDocument], p: &Principal, action: &str, resource: &str) -> Decision {
    let ctx = Context::new();
    evaluate_identity(policies.iter().copied(), &req(p, action, resource, &ctx))
}

#[test]
fn identity_deny_beats_allow_beats_default() {
    let alice = Principal::user(ACCT, "alice");
    let allow = policy(json!({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}));
    let deny =
        policy(json!({"Effect": "Deny", "Action": "lambda:DeleteFunction", "Resource": FN_ARN}));
    assert_eq!(
        identity(&[], &alice, "lambda:GetFunction", FN_ARN),
        Decision::ImplicitDeny
    );
    assert_eq!(
        identity(&[&allow], &alice, "lambda:GetFunction", FN_ARN),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&allow, &deny], &alice, "lambda:GetFunction", FN_ARN),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&allow, &deny], &alice, "lambda:DeleteFunction", FN_ARN),
        Decision::ExplicitDeny
    );
    assert_eq!(
        identity(&[&deny, &allow], &alice, "lambda:DeleteFunction", FN_ARN),
        Decision::ExplicitDeny
    );
    assert_eq!(
        identity(&[&deny], &alice, "lambda:GetFunction", FN_ARN),
        Decision::ImplicitDeny
    );
    assert_eq!(
        identity(&[&allow], &alice, "logs:PutLogEvents", "*"),
        Decision::ImplicitDeny
    );
}

#[test]
fn identity_ignores_principal_elements() {
    // An identity policy should not have one (parse_as refuses it), but if it does it
    // plays no part.
    let p = policy(json!({"Effect": "Allow", "Principal": {"AWS": OTHER},
                          "Action": "lambda:GetFunction", "Resource": "*"}));
    let alice = Principal::user(ACCT, "alice");
    assert_eq!(
        identity(&[&p], &alice, "lambda:GetFunction", FN_ARN),
        Decision::Allow
    );
}

#[test]
fn not_action_and_not_resource() {
    let alice = Principal::user(ACCT, "alice");
    let p = policy(json!([
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "NotResource": "arn:aws:lambda:*:*:function:orders*"}
    ]));
    assert_eq!(
        identity(&[&p], &alice, "lambda:GetFunction", FN_ARN),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&p], &alice, "iam:CreateRole", FN_ARN),
        Decision::ImplicitDeny
    );
    assert_eq!(
        identity(
            &[&p],
            &alice,
            "lambda:GetFunction",
            "arn:aws:lambda:us-east-1:1:function:x"
        ),
        Decision::ExplicitDeny
    );
}

#[test]
fn statement_without_resource_matches_everything() {
    let alice = Principal::user(ACCT, "alice");
    let p = policy(json!({"Effect": "Allow", "Action": "logs:*"}));
    assert_eq!(
        identity(&[&p], &alice, "logs:CreateLogGroup", "arn:aws:logs:x"),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&p], &alice, "logs:DescribeLogGroups", "*"),
        Decision::Allow
    );
}

#[test]
fn actions_are_case_insensitive_resources_are_not() {
    let alice = Principal::user(ACCT, "alice");
    let p = policy(json!({"Effect": "Allow", "Action": "Lambda:getfunction", "Resource": FN_ARN}));
    assert_eq!(
        identity(&[&p], &alice, "lambda:GetFunction", FN_ARN),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&p], &alice, "lambda:GetFunction", &FN_ARN.to_uppercase()),
        Decision::ImplicitDeny
    );
}

#[test]
fn qualified_and_unqualified_function_arns() {
    let alice = Principal::user(ACCT, "alice");
    let live = format!("{FN_ARN}:live");
    let exact =
        policy(json!({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": FN_ARN}));
    let any_qualifier = policy(json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                                      "Resource": format!("{FN_ARN}:*")}));
    let glob = policy(json!({"Effect": "Allow", "Action": "lambda:InvokeFunction",
                             "Resource": "arn:aws:lambda:*:*:function:o*"}));
    let invoke = "lambda:InvokeFunction";
    assert_eq!(identity(&[&exact], &alice, invoke, FN_ARN), Decision::Allow);
    assert_eq!(
        identity(&[&exact], &alice, invoke, &live),
        Decision::ImplicitDeny
    );
    assert_eq!(
        identity(&[&any_qualifier], &alice, invoke, &live),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&any_qualifier], &alice, invoke, FN_ARN),
        Decision::ImplicitDeny
    );
    assert_eq!(identity(&[&glob], &alice, invoke, &live), Decision::Allow);
    assert_eq!(identity(&[&glob], &alice, invoke, FN_ARN), Decision::Allow);
}

#[test]
fn conditions_gate_statements() {
    let alice = Principal::user(ACCT, "alice");
    let p = policy(json!([
        {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    ]));
    let secure = Context::new().with("aws:SecureTransport", "true");
    let insecure = Context::new().with("aws:SecureTransport", "false");
    let action = "lambda:GetFunction";
    assert_eq!(
        evaluate_identity([&p], &req(&alice, action, FN_ARN, &secure)),
        Decision::Allow
    );
    assert_eq!(
        evaluate_identity([&p], &req(&alice, action, FN_ARN, &insecure)),
        Decision::ExplicitDeny
    );
    // Key absent: Bool is false, so the Deny does not apply.
    assert_eq!(
        evaluate_identity([&p], &req(&alice, action, FN_ARN, &Context::new())),
        Decision::Allow
    );
}

#[test]
fn principal_keys_are_supplied_by_evaluation() {
    let p = policy(
        json!({"Effect": "Allow", "Action": "lambda:*", "Resource": "*",
        "Condition": {"StringEquals": {
            "aws:PrincipalAccount": ACCT,
            "aws:PrincipalArn": format!("arn:aws:iam::{ACCT}:role/Deployer")
        }}}),
    );
    let ctx = Context::new();
    let deployer = Principal::assumed_role(ACCT, "Deployer", "ci");
    let other = Principal::assumed_role(ACCT, "Other", "ci");
    let foreign = Principal::assumed_role(OTHER, "Deployer", "ci");
    let action = "lambda:GetFunction";
    assert_eq!(
        evaluate_identity([&p], &req(&deployer, action, FN_ARN, &ctx)),
        Decision::Allow
    );
    assert_eq!(
        evaluate_identity([&p], &req(&other, action, FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
    assert_eq!(
        evaluate_identity([&p], &req(&foreign, action, FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
}

#[test]
fn policy_variables_in_resources() {
    let p = policy(json!({"Effect": "Allow", "Action": "iam:*AccessKey*",
                          "Resource": "arn:aws:iam::*:user/${aws:username}"}));
    let alice = Principal::user(ACCT, "alice");
    let own = format!("arn:aws:iam::{ACCT}:user/alice");
    let bobs = format!("arn:aws:iam::{ACCT}:user/bob");
    assert_eq!(
        identity(&[&p], &alice, "iam:CreateAccessKey", &own),
        Decision::Allow
    );
    assert_eq!(
        identity(&[&p], &alice, "iam:CreateAccessKey", &bobs),
        Decision::ImplicitDeny
    );
    // A role session has no aws:username: the resource matches nothing.
    let role = Principal::assumed_role(ACCT, "R", "alice");
    assert_eq!(
        identity(&[&p], &role, "iam:CreateAccessKey", &own),
        Decision::ImplicitDeny
    );
}

fn function_policy() -> PolicyDocument {
    policy(json!([
        {"Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
         "Action": "lambda:InvokeFunction", "Resource": FN_ARN,
         "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::orders-bucket"},
                       "StringEquals": {"aws:SourceAccount": ACCT}}},
        {"Sid": "partner", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:root")},
         "Action": "lambda:InvokeFunction", "Resource": FN_ARN},
        {"Sid": "no-intruder", "Effect": "Deny",
         "Principal": {"AWS": format!("arn:aws:iam::{OTHER}:user/intruder")},
         "Action": "lambda:*", "Resource": "*"}
    ]))
}

#[test]
fn resource_policy_matches_principals() {
    let fp = function_policy();
    let invoke = "lambda:InvokeFunction";
    let good = Context::new()
        .with("aws:SourceArn", "arn:aws:s3:::orders-bucket")
        .with("aws:SourceAccount", ACCT);
    let wrong_bucket = Context::new()
        .with("aws:SourceArn", "arn:aws:s3:::other")
        .with("aws:SourceAccount", ACCT);
    let s3 = Principal::service("s3.amazonaws.com");
    let sns = Principal::service("sns.amazonaws.com");
    assert_eq!(
        evaluate_resource(&fp, &req(&s3, invoke, FN_ARN, &good)),
        Decision::Allow
    );
    assert_eq!(
        evaluate_resource(&fp, &req(&s3, invoke, FN_ARN, &wrong_bucket)),
        Decision::ImplicitDeny
    );
    assert_eq!(
        evaluate_resource(&fp, &req(&sns, invoke, FN_ARN, &good)),
        Decision::ImplicitDeny
    );

    let ctx = Context::new();
    let partner = Principal::user(OTHER, "app");
    let intruder = Principal::user(OTHER, "intruder");
    let local = Principal::user(ACCT, "alice");
    assert_eq!(
        evaluate_resource(&fp, &req(&partner, invoke, FN_ARN, &ctx)),
        Decision::Allow
    );
    assert_eq!(
        evaluate_resource(&fp, &req(&intruder, invoke, FN_ARN, &ctx)),
        Decision::ExplicitDeny
    );
    assert_eq!(
        evaluate_resource(&fp, &req(&local, invoke, FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
}

#[test]
fn resource_statement_without_principal_applies_to_nobody() {
    let p = policy(json!({"Effect": "Allow", "Action": "*", "Resource": "*"}));
    let ctx = Context::new();
    let alice = Principal::user(ACCT, "alice");
    assert_eq!(
        evaluate_resource(&p, &req(&alice, "lambda:X", FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
}

#[test]
fn not_principal_in_resource_policy() {
    let p = policy(json!({"Effect": "Deny", "NotPrincipal": {"AWS": ACCT},
                          "Action": "lambda:*", "Resource": "*"}));
    let ctx = Context::new();
    let local = Principal::user(ACCT, "alice");
    let foreign = Principal::user(OTHER, "bob");
    assert_eq!(
        evaluate_resource(&p, &req(&local, "lambda:X", FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
    assert_eq!(
        evaluate_resource(&p, &req(&foreign, "lambda:X", FN_ARN, &ctx)),
        Decision::ExplicitDeny
    );
}

#[test]
fn authorize_same_account() {
    let ctx = Context::new();
    let alice = Principal::user(ACCT, "alice");
    let invoke = "lambda:InvokeFunction";
    let r = req(&alice, invoke, FN_ARN, &ctx);
    let allow = policy(json!({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}));
    let grants_alice = policy(json!({"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")},
        "Action": "lambda:InvokeFunction", "Resource": FN_ARN}));
    let denies_alice = policy(json!({"Effect": "Deny",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")},
        "Action": "lambda:InvokeFunction", "Resource": FN_ARN}));

    // Either side may grant within an account.
    assert_eq!(authorize(Some(&[&allow]), None, ACCT, &r), Decision::Allow);
    assert_eq!(
        authorize(Some(&[]), Some(&grants_alice), ACCT, &r),
        Decision::Allow
    );
    assert_eq!(
        authorize(Some(&[&allow]), Some(&grants_alice), ACCT, &r),
        Decision::Allow
    );
    assert_eq!(authorize(Some(&[]), None, ACCT, &r), Decision::ImplicitDeny);
    assert_eq!(
        authorize(Some(&[]), Some(&function_policy()), ACCT, &r),
        Decision::ImplicitDeny
    );
    // Account-less actions count as same-account.
    assert_eq!(
        authorize(
            Some(&[&allow]),
            None,
            "",
            &req(&alice, "lambda:ListFunctions", "*", &ctx)
        ),
        Decision::Allow
    );
    // Any explicit deny wins.
    assert_eq!(
        authorize(Some(&[&allow]), Some(&denies_alice), ACCT, &r),
        Decision::ExplicitDeny
    );
    let deny_identity = policy(json!({"Effect": "Deny", "Action": "*", "Resource": "*"}));
    assert_eq!(
        authorize(Some(&[&deny_identity]), Some(&grants_alice), ACCT, &r),
        Decision::ExplicitDeny
    );
}

#[test]
fn authorize_cross_account() {
    let ctx = Context::new();
    let invoke = "lambda:InvokeFunction";
    let partner = Principal::user(OTHER, "app");
    let r = req(&partner, invoke, FN_ARN, &ctx);
    let allow =
        policy(json!({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}));
    let fp = function_policy(); // grants account OTHER

    // Both sides must grant.
    assert_eq!(
        authorize(Some(&[&allow]), Some(&fp), ACCT, &r),
        Decision::Allow
    );
    assert_eq!(
        authorize(Some(&[]), Some(&fp), ACCT, &r),
        Decision::ImplicitDeny
    );
    assert_eq!(
        authorize(Some(&[&allow]), None, ACCT, &r),
        Decision::ImplicitDeny
    );
    let none_for_partner = policy(json!({"Effect": "Allow", "Principal": {"AWS": ACCT},
                                         "Action": "*", "Resource": "*"}));
    assert_eq!(
        authorize(Some(&[&allow]), Some(&none_for_partner), ACCT, &r),
        Decision::ImplicitDeny
    );
    // The resource policy's deny applies across accounts too.
    let intruder = Principal::user(OTHER, "intruder");
    let r = req(&intruder, invoke, FN_ARN, &ctx);
    assert_eq!(
        authorize(Some(&[&allow]), Some(&fp), ACCT, &r),
        Decision::ExplicitDeny
    );
}

#[test]
fn authorize_root() {
    let ctx = Context::new();
    let invoke = "lambda:InvokeFunction";
    let fp = function_policy();

    // A root may do anything in its own account...
    let root = Principal::root(ACCT);
    let r = req(&root, invoke, FN_ARN, &ctx);
    assert_eq!(authorize(None, None, ACCT, &r), Decision::Allow);
    assert_eq!(authorize(None, Some(&fp), ACCT, &r), Decision::Allow);
    // ...but not past an explicit deny in the resource policy.
    let deny_all =
        policy(json!({"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}));
    assert_eq!(
        authorize(None, Some(&deny_all), ACCT, &r),
        Decision::ExplicitDeny
    );

    // Across accounts a root needs the resource policy.
    let other_root = Principal::root(OTHER);
    let r = req(&other_root, invoke, FN_ARN, &ctx);
    assert_eq!(authorize(None, None, ACCT, &r), Decision::ImplicitDeny);
    assert_eq!(authorize(None, Some(&fp), ACCT, &r), Decision::Allow);
    let other_action = req(&other_root, "lambda:DeleteFunction", FN_ARN, &ctx);
    assert_eq!(
        authorize(None, Some(&fp), ACCT, &other_action),
        Decision::ImplicitDeny
    );

    // `None` for a principal that is not a root grants nothing by itself.
    let alice = Principal::user(ACCT, "alice");
    assert_eq!(
        authorize(None, None, ACCT, &req(&alice, invoke, FN_ARN, &ctx)),
        Decision::ImplicitDeny
    );
}

#[test]
fn authorize_service_principal() {
    let fp = function_policy();
    let s3 = Principal::service("s3.amazonaws.com");
    let good = Context::new()
        .with("aws:SourceArn", "arn:aws:s3:::orders-bucket")
        .with("aws:SourceAccount", ACCT);
    let r = req(&s3, "lambda:InvokeFunction", FN_ARN, &good);
    assert_eq!(authorize(Some(&[]), Some(&fp), ACCT, &r), Decision::Allow);
    assert_eq!(authorize(Some(&[]), None, ACCT, &r), Decision::ImplicitDeny);
    let wrong = Context::new().with("aws:SourceArn", "arn:aws:s3:::other");
    let r = req(&s3, "lambda:InvokeFunction", FN_ARN, &wrong);
    assert_eq!(
        authorize(Some(&[]), Some(&fp), ACCT, &r),
        Decision::ImplicitDeny
    );
}

#[test]
fn trust_policy_for_lambda() {
    let trust = PolicyDocument::parse_as(
        &json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}})
        .to_string(),
        PolicyKind::Trust,
    )
    .unwrap();
    let ctx = Context::new();
    let lambda = Principal::service("lambda.amazonaws.com");
    assert!(trust_allows(&trust, &lambda, "sts:AssumeRole", &ctx));
    assert!(trust_allows(
        &trust,
        &Principal::service("Lambda.AmazonAWS.com"),
        "sts:assumerole",
        &ctx
    ));
    assert!(!trust_allows(&trust, &lambda, "sts:TagSession", &ctx));
    assert!(!trust_allows(
        &trust,
        &Principal::service("ec2.amazonaws.com"),
        "sts:AssumeRole",
        &ctx
    ));
    assert!(!trust_allows(
        &trust,
        &Principal::root(ACCT),
        "sts:AssumeRole",
        &ctx
    ));
}

#[test]
fn trust_policy_for_accounts_ignores_resources() {
    // A trust policy has no Resource; if one sneaks in (plain `parse`), it is ignored.
    let trust = policy(json!([
        {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:AssumeRole",
         "Resource": "arn:aws:iam::123456789012:role/Nothing"},
        {"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/mallory")},
         "Action": "sts:AssumeRole"}
    ]));
    let ctx = Context::new();
    assert!(trust_allows(
        &trust,
        &Principal::user(ACCT, "alice"),
        "sts:AssumeRole",
        &ctx
    ));
    assert!(trust_allows(
        &trust,
        &Principal::assumed_role(ACCT, "R", "s"),
        "sts:AssumeRole",
        &ctx
    ));
    assert!(!trust_allows(
        &trust,
        &Principal::user(ACCT, "mallory"),
        "sts:AssumeRole",
        &ctx
    ));
    assert!(!trust_allows(
        &trust,
        &Principal::user(OTHER, "alice"),
        "sts:AssumeRole",
        &ctx
    ));
}

#[test]
fn trust_conditions() {
    let trust = policy(json!({"Effect": "Allow", "Principal": {"AWS": OTHER},
        "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "secret"}}}));
    let partner = Principal::user(OTHER, "app");
    assert!(trust_allows(
        &trust,
        &partner,
        "sts:AssumeRole",
        &Context::new().with("sts:ExternalId", "secret")
    ));
    assert!(!trust_allows(
        &trust,
        &partner,
        "sts:AssumeRole",
        &Context::new()
    ));
}

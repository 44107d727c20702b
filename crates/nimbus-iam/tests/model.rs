//! Property tests: the compiled evaluator against a small, obviously-correct model.
//!
//! Documents are generated from a small alphabet of actions, resources and one optional
//! condition, written out as JSON, parsed with `PolicyDocument::parse`, and evaluated
//! with `evaluate_identity`; the model interprets the same generated structure directly
//! with naive recursive wildcard matching and plain loops.

use nimbus_iam::{
    evaluate_identity, Case, Context, Decision, Pattern, PolicyDocument, Principal, Request,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const CASES: u32 = 1024;

const ACTION_PATTERNS: &[&str] = &[
    "lambda:*",
    "lambda:Invoke*",
    "lambda:GetFunction",
    "lambda:?etFunction",
    "*",
    "iam:*",
    "LAMBDA:getfunction",
    "logs:Put*Events",
];

const FN: &str = "arn:aws:lambda:us-east-1:123456789012:function";

fn resource_patterns() -> Vec<String> {
    vec![
        "*".into(),
        format!("{FN}:orders"),
        format!("{FN}:orders:*"),
        "arn:aws:lambda:*:*:function:o*".into(),
        format!("{FN}:?rders"),
        format!("{FN}:*:live"),
        "arn:aws:iam::123456789012:role/*".into(),
        "arn:aws:lambda:*".into(),
    ]
}

const REQUEST_ACTIONS: &[&str] = &[
    "lambda:InvokeFunction",
    "lambda:GetFunction",
    "lambda:SetFunction",
    "lambda:getfunction",
    "lambda:InvokeAsync",
    "iam:CreateRole",
    "logs:PutLogEvents",
    "sts:AssumeRole",
];

fn request_resources() -> Vec<String> {
    vec![
        "*".into(),
        format!("{FN}:orders"),
        format!("{FN}:orders:live"),
        format!("{FN}:orders:1"),
        format!("{FN}:orders2"),
        format!("{FN}:Orders"),
        format!("{FN}:xrders"),
        "arn:aws:lambda:eu-west-1:210987654321:function:other:live".into(),
        "arn:aws:iam::123456789012:role/Deployer".into(),
    ]
}

const CONDITION_VALUES: &[&str] = &["alpha", "al*", "a?pha", "beta", "*", "ALPHA"];
const REQUEST_VALUES: &[&str] = &["alpha", "alps", "beta", "ALPHA", "*", "aXpha", ""];
/// The same key in different letter cases: key names are case-insensitive. (Not a key
/// evaluation derives from the principal, such as `aws:username`, which the model ignores.)
const KEY_SPELLINGS: &[&str] = &[
    "aws:SourceAccount",
    "AWS:SOURCEACCOUNT",
    "aws:sourceaccount",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringLike,
}

#[derive(Debug, Clone)]
struct Element {
    negated: bool,
    items: Vec<String>,
    /// Write a one-item list as a bare string.
    bare: bool,
}

#[derive(Debug, Clone)]
struct Cond {
    op: Op,
    key: &'static str,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Stmt {
    effect: Effect,
    actions: Element,
    resources: Option<Element>,
    condition: Option<Cond>,
}

#[derive(Debug, Clone)]
struct Req {
    action: &'static str,
    resource: String,
    /// (key spelling, value) of the one condition key, if present.
    value: Option<(&'static str, &'static str)>,
}

fn element(alphabet: Vec<String>) -> impl Strategy<Value = Element> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(alphabet), 1..=3),
        any::<bool>(),
    )
        .prop_map(|(negated, items, bare)| Element {
            negated,
            items,
            bare,
        })
}

fn statement() -> impl Strategy<Value = Stmt> {
    let actions: Vec<String> = ACTION_PATTERNS.iter().map(|s| s.to_string()).collect();
    let values: Vec<String> = CONDITION_VALUES.iter().map(|s| s.to_string()).collect();
    let condition = (
        prop_oneof![Just(Op::StringEquals), Just(Op::StringLike)],
        prop::sample::select(KEY_SPELLINGS),
        prop::collection::vec(prop::sample::select(values), 1..=2),
    )
        .prop_map(|(op, key, values)| Cond { op, key, values });
    (
        prop_oneof![Just(Effect::Allow), Just(Effect::Deny)],
        element(actions),
        prop::option::of(element(resource_patterns())),
        prop::option::of(condition),
    )
        .prop_map(|(effect, actions, resources, condition)| Stmt {
            effect,
            actions,
            resources,
            condition,
        })
}

fn document() -> impl Strategy<Value = Vec<Stmt>> {
    prop::collection::vec(statement(), 1..=4)
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(REQUEST_ACTIONS),
        prop::sample::select(request_resources()),
        prop::option::of((
            prop::sample::select(KEY_SPELLINGS),
            prop::sample::select(REQUEST_VALUES),
        )),
    )
        .prop_map(|(action, resource, value)| Req {
            action,
            resource,
            value,
        })
}

// ---- JSON ----------------------------------------------------------------------------

fn element_json(e: &Element) -> Value {
    if e.bare && e.items.len() == 1 {
        json!(e.items[0])
    } else {
        json!(e.items)
    }
}

fn statement_json(s: &Stmt) -> Value {
    let mut out = serde_json::Map::new();
    let effect = match s.effect {
        Effect::Allow => "Allow",
        Effect::Deny => "Deny",
    };
    out.insert("Effect".into(), json!(effect));
    let action_key = if s.actions.negated {
        "NotAction"
    } else {
        "Action"
    };
    out.insert(action_key.into(), element_json(&s.actions));
    if let Some(r) = &s.resources {
        let key = if r.negated { "NotResource" } else { "Resource" };
        out.insert(key.into(), element_json(r));
    }
    if let Some(c) = &s.condition {
        let op = match c.op {
            Op::StringEquals => "StringEquals",
            Op::StringLike => "StringLike",
        };
        out.insert("Condition".into(), json!({op: {c.key: c.values}}));
    }
    Value::Object(out)
}

fn parse(statements: &[Stmt]) -> PolicyDocument {
    let statements: Vec<Value> = statements.iter().map(statement_json).collect();
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    PolicyDocument::parse(&doc.to_string()).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

// ---- the model ------------------------------------------------------------------------

/// `*` any run, `?` one character, everything else itself: plain recursion.
fn wild(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => wild(rest, text) || (!text.is_empty() && wild(pattern, &text[1..])),
        Some(('?', rest)) => !text.is_empty() && wild(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && wild(rest, &text[1..]),
    }
}

fn wild_str(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    wild(&p, &t)
}

fn model_applies(s: &Stmt, r: &Req) -> bool {
    let action = r.action.to_lowercase();
    let action_hit = s
        .actions
        .items
        .iter()
        .any(|p| wild_str(&p.to_lowercase(), &action));
    if action_hit == s.actions.negated {
        return false;
    }
    if let Some(res) = &s.resources {
        let hit = res.items.iter().any(|p| wild_str(p, &r.resource));
        if hit == res.negated {
            return false;
        }
    }
    if let Some(c) = &s.condition {
        // Every generated key spelling names the same key.
        let Some((_, value)) = r.value else {
            return false;
        };
        let hit = match c.op {
            Op::StringEquals => c.values.iter().any(|v| v == value),
            Op::StringLike => c.values.iter().any(|v| wild_str(v, value)),
        };
        if !hit {
            return false;
        }
    }
    true
}

fn model(documents: &[Vec<Stmt>], r: &Req) -> Decision {
    let mut allowed = false;
    for doc in documents {
        for s in doc {
            if model_applies(s, r) {
                match s.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

// ---- the system under test ------------------------------------------------------------

fn evaluate(policies: &[PolicyDocument], r: &Req) -> Decision {
    let alice = Principal::user("123456789012", "alice");
    let context = match r.value {
        Some((key, value)) => Context::new().with(key, value),
        None => Context::new(),
    };
    let req = Request {
        principal: &alice,
        action: r.action,
        resource: &r.resource,
        context: &context,
    };
    evaluate_identity(policies, &req)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn evaluation_agrees_with_the_model(
        documents in prop::collection::vec(document(), 1..=3),
        requests in prop::collection::vec(request(), 1..=8),
    ) {
        let policies: Vec<PolicyDocument> = documents.iter().map(|d| parse(d)).collect();
        for r in &requests {
            prop_assert_eq!(evaluate(&policies, r), model(&documents, r), "request {:?}", r);
        }
    }

    #[test]
    fn statement_order_does_not_matter(
        (statements, shuffled) in document().prop_flat_map(|d| {
            let shuffled = Just(d.clone()).prop_shuffle();
            (Just(d), shuffled)
        }),
        requests in prop::collection::vec(request(), 1..=8),
    ) {
        let original = [parse(&statements)];
        let reordered = [parse(&shuffled)];
        for r in &requests {
            prop_assert_eq!(evaluate(&original, r), evaluate(&reordered, r), "request {:?}", r);
        }
    }

    #[test]
    fn a_deny_of_everything_always_wins(
        documents in prop::collection::vec(document(), 1..=3),
        at in any::<prop::sample::Index>(),
        requests in prop::collection::vec(request(), 1..=8),
    ) {
        let mut policies: Vec<PolicyDocument> = documents.iter().map(|d| parse(d)).collect();
        let deny_all = PolicyDocument::parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#,
        ).unwrap();
        policies.insert(at.index(policies.len() + 1), deny_all);
        for r in &requests {
            prop_assert_eq!(evaluate(&policies, r), Decision::ExplicitDeny);
        }
    }

    #[test]
    fn adding_a_deny_statement_never_helps(
        statements in document(),
        extra in statement(),
        requests in prop::collection::vec(request(), 1..=8),
    ) {
        let before = [parse(&statements)];
        let mut with_deny = statements.clone();
        with_deny.push(Stmt { effect: Effect::Deny, ..extra });
        let after = [parse(&with_deny)];
        for r in &requests {
            let (b, a) = (evaluate(&before, r), evaluate(&after, r));
            prop_assert!(b != Decision::Allow || a != Decision::ImplicitDeny, "{:?} -> {:?}", b, a);
            prop_assert!(b != Decision::ExplicitDeny || a == Decision::ExplicitDeny);
        }
    }

    #[test]
    fn wildcard_matching_agrees_with_backtracking(
        pattern in "[ab:*?é]{0,8}",
        text in "[ab:é]{0,10}",
    ) {
        let compiled = Pattern::glob(&pattern, Case::Sensitive);
        prop_assert_eq!(compiled.matches(&text), wild_str(&pattern, &text));
        let upper = text.to_uppercase();
        let insensitive = Pattern::glob(&pattern, Case::Insensitive);
        prop_assert_eq!(insensitive.matches(&upper), wild_str(&pattern, &text));
    }
}

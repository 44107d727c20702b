//! IAM in the state machine: users, roles, inline and managed policies, the access keys
//! of users, and functions' resource-based policies (`AddPermission`). Everything here
//! depends on current state, so it is checked at apply time: uniqueness regardless of
//! case, quotas, and IAM's refusal to delete what still has things attached.

use std::collections::{BTreeMap, BTreeSet};

use nimbus_types::iam::{self, IamPrincipalRef, IamRole, IamUser, ManagedPolicy, BUILTIN_POLICIES};
use nimbus_types::{
    keys, limits, AccessKey, Command, CommandOutput, Entity, ErrorKind, Function, MetaError, Query,
    QueryOutput,
};

mod common;
use common::*;

/// An account that does not exist.
const NO_ACCOUNT: &str = "999999999999";

async fn harness() -> Harness {
    let mut h = Harness::new();
    h.setup().await;
    h
}

fn user(name: &str) -> IamUser {
    IamUser {
        account_id: ACCOUNT.into(),
        name: name.into(),
        user_id: format!("AIDA{}", name.to_uppercase()),
        path: "/".into(),
        created_ms: 10,
        inline_policies: BTreeMap::new(),
        attached: vec![],
        access_keys: vec![],
    }
}

fn role(name: &str) -> IamRole {
    IamRole {
        account_id: ACCOUNT.into(),
        name: name.into(),
        role_id: format!("AROA{}", name.to_uppercase()),
        path: "/".into(),
        description: String::new(),
        trust_policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#.into(),
        max_session_secs: 3600,
        created_ms: 10,
        inline_policies: BTreeMap::new(),
        attached: vec![],
    }
}

fn managed(name: &str) -> ManagedPolicy {
    ManagedPolicy {
        account_id: ACCOUNT.into(),
        name: name.into(),
        policy_id: format!("ANPA{}", name.to_uppercase()),
        path: "/".into(),
        description: String::new(),
        document: doc("lambda:InvokeFunction"),
        created_ms: 10,
        attachment_count: 0,
    }
}

fn arn_of(policy_name: &str) -> String {
    managed(policy_name).arn()
}

fn access_key(id: &str, user_name: Option<&str>) -> AccessKey {
    AccessKey {
        access_key_id: id.into(),
        account_id: ACCOUNT.into(),
        secret_ciphertext: vec![7; 16],
        user_name: user_name.map(str::to_string),
        active: true,
        created_ms: 42,
    }
}

/// A small policy document allowing `action`.
fn doc(action: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
    )
}

/// A document of exactly `n` characters as IAM counts them (whitespace is free).
fn doc_of_size(n: usize) -> String {
    // `{"Sid":""}` is 10 counted characters.
    let d = format!("{{ \"Sid\" :\n  \"{}\" }}\n", "x".repeat(n - 10));
    assert_eq!(iam::policy_size(&d), n);
    d
}

fn as_user(name: &str) -> IamPrincipalRef {
    IamPrincipalRef::User(name.into())
}

fn as_role(name: &str) -> IamPrincipalRef {
    IamPrincipalRef::Role(name.into())
}

fn put_inline(principal: IamPrincipalRef, policy_name: &str, document: String) -> Command {
    Command::PutInlinePolicy {
        account_id: ACCOUNT.into(),
        principal,
        policy_name: policy_name.into(),
        document,
    }
}

fn delete_inline(principal: IamPrincipalRef, policy_name: &str) -> Command {
    Command::DeleteInlinePolicy {
        account_id: ACCOUNT.into(),
        principal,
        policy_name: policy_name.into(),
    }
}

fn attach(principal: IamPrincipalRef, policy_arn: &str) -> Command {
    Command::AttachPolicy {
        account_id: ACCOUNT.into(),
        principal,
        policy_arn: policy_arn.into(),
    }
}

fn detach(principal: IamPrincipalRef, policy_arn: &str) -> Command {
    Command::DetachPolicy {
        account_id: ACCOUNT.into(),
        principal,
        policy_arn: policy_arn.into(),
    }
}

fn create_user(name: &str) -> Command {
    Command::CreateIamUser { user: user(name) }
}

fn create_role(name: &str) -> Command {
    Command::CreateIamRole { role: role(name) }
}

fn create_policy(name: &str) -> Command {
    Command::CreateManagedPolicy {
        policy: managed(name),
    }
}

fn delete_user(name: &str) -> Command {
    Command::DeleteIamUser {
        account_id: ACCOUNT.into(),
        name: name.into(),
    }
}

fn delete_role(name: &str) -> Command {
    Command::DeleteIamRole {
        account_id: ACCOUNT.into(),
        name: name.into(),
    }
}

fn delete_managed(name: &str) -> Command {
    Command::DeleteManagedPolicy {
        account_id: ACCOUNT.into(),
        name: name.into(),
    }
}

/// Applies a command that must succeed.
async fn ok(h: &mut Harness, cmd: Command) -> CommandOutput {
    let shown = format!("{cmd:?}");
    match h.apply(cmd).await.result {
        Ok(out) => out,
        Err(e) => panic!("{shown} failed: {e:?}"),
    }
}

/// Applies a command that must fail, and returns its error.
async fn err(h: &mut Harness, cmd: Command) -> MetaError {
    let shown = format!("{cmd:?}");
    match h.apply(cmd).await.result {
        Ok(out) => panic!("{shown} succeeded ({out:?}), expected an error"),
        Err(e) => e,
    }
}

fn entity(h: &Harness, key: &str) -> Option<Entity> {
    match h.sm.query(&Query::Get { key: key.into() }).unwrap() {
        QueryOutput::Entity(e) => e,
        other => panic!("unexpected {other:?}"),
    }
}

fn stored_user(h: &Harness, name: &str) -> Option<IamUser> {
    match entity(h, &keys::iam_user(ACCOUNT, name)) {
        Some(Entity::IamUser(u)) => Some(u),
        None => None,
        other => panic!("not a user: {other:?}"),
    }
}

fn stored_role(h: &Harness, name: &str) -> Option<IamRole> {
    match entity(h, &keys::iam_role(ACCOUNT, name)) {
        Some(Entity::IamRole(r)) => Some(r),
        None => None,
        other => panic!("not a role: {other:?}"),
    }
}

fn stored_policy(h: &Harness, name: &str) -> Option<ManagedPolicy> {
    match entity(h, &keys::iam_policy(ACCOUNT, name)) {
        Some(Entity::ManagedPolicy(p)) => Some(p),
        None => None,
        other => panic!("not a managed policy: {other:?}"),
    }
}

fn stored_key(h: &Harness, id: &str) -> Option<AccessKey> {
    match entity(h, &keys::access_key(id)) {
        Some(Entity::AccessKey(k)) => Some(k),
        None => None,
        other => panic!("not an access key: {other:?}"),
    }
}

fn stored_function(h: &Harness, name: &str) -> Function {
    match entity(h, &keys::function(&key(name))) {
        Some(Entity::Function(f)) => f,
        other => panic!("not a function: {other:?}"),
    }
}

fn user_keys(h: &Harness, name: &str) -> Vec<String> {
    stored_user(h, name).expect("user exists").access_keys
}

fn attachment_count(h: &Harness, name: &str) -> u32 {
    stored_policy(h, name)
        .expect("policy exists")
        .attachment_count
}

// ---- function permissions ----

/// A statement for function `f`, padded (in its condition) by `pad` bytes.
fn statement(sid: &str, pad: usize) -> String {
    format!(
        r#"{{"Sid":"{sid}","Effect":"Allow","Principal":{{"Service":"s3.amazonaws.com"}},"Action":"lambda:InvokeFunction","Resource":"{}","Condition":{{"StringEquals":{{"aws:SourceAccount":"{}"}}}}}}"#,
        key("f").arn(),
        "1".repeat(pad)
    )
}

/// A statement of exactly `len` bytes.
fn statement_of_len(sid: &str, len: usize) -> String {
    let s = statement(sid, len - statement(sid, 0).len());
    assert_eq!(s.len(), len);
    s
}

fn add_permission(qualifier: &str, sid: &str, expected: Option<&str>) -> Command {
    add_statement(qualifier, sid, statement(sid, 0), expected)
}

fn add_statement(qualifier: &str, sid: &str, stmt: String, expected: Option<&str>) -> Command {
    Command::AddFunctionPermission {
        key: key("f"),
        qualifier: qualifier.into(),
        statement_id: sid.into(),
        statement: stmt,
        expected_revision: expected.map(str::to_string),
    }
}

fn remove_permission(qualifier: &str, sid: &str, expected: Option<&str>) -> Command {
    Command::RemoveFunctionPermission {
        key: key("f"),
        qualifier: qualifier.into(),
        statement_id: sid.into(),
        expected_revision: expected.map(str::to_string),
    }
}

/// A permission change that must succeed; returns the function as it is now.
async fn changed(h: &mut Harness, cmd: Command) -> Function {
    match ok(h, cmd).await {
        CommandOutput::Function(f) => *f,
        other => panic!("expected the function, got {other:?}"),
    }
}

/// Function `f`, its version 1, and alias `live` pointing at it.
async fn function_with_alias(h: &mut Harness) {
    h.create_function("f").await;
    ok(
        h,
        Command::PublishVersion {
            key: key("f"),
            description: String::new(),
            expected_code_sha256: None,
            expected_revision: None,
            now_ms: 3,
        },
    )
    .await;
    ok(h, create_alias("live")).await;
}

fn create_alias(name: &str) -> Command {
    Command::CreateAlias {
        key: key("f"),
        name: name.into(),
        function_version: "1".into(),
        description: String::new(),
        routing: None,
    }
}

fn qualifiers(f: &Function) -> Vec<&str> {
    f.resource_policy.keys().map(String::as_str).collect()
}

fn sids<'a>(f: &'a Function, qualifier: &str) -> Vec<&'a str> {
    f.resource_policy[qualifier]
        .iter()
        .map(|(s, _)| s.as_str())
        .collect()
}

// ---- users ----

#[tokio::test]
async fn users_are_unique_regardless_of_case_and_deleted_only_when_bare() {
    let mut h = harness().await;
    assert_eq!(ok(&mut h, create_user("Alice")).await, CommandOutput::Done);
    assert_eq!(stored_user(&h, "alice"), Some(user("Alice")));
    let listed = h.list(&keys::iam_users_of(ACCOUNT));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, format!("iam/user/{ACCOUNT}/alice"));

    // Same name, other case: refused, and the first user stays as it was.
    let e = err(&mut h, create_user("ALICE")).await;
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    assert_eq!(e.message, "User with name ALICE already exists.");
    assert_eq!(stored_user(&h, "Alice"), Some(user("Alice")));

    // A user needs its account.
    let stray = IamUser {
        account_id: NO_ACCOUNT.into(),
        ..user("Bob")
    };
    let e = err(&mut h, Command::CreateIamUser { user: stray }).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert!(e.message.contains(NO_ACCOUNT), "{}", e.message);
    assert!(entity(&h, &keys::iam_user(NO_ACCOUNT, "Bob")).is_none());

    // Each thing the user still has blocks deleting it, with IAM's message.
    let builtin = BUILTIN_POLICIES[0].arn;
    let blockers: [(Command, Command, &str); 3] = [
        (
            Command::PutAccessKey {
                key: access_key("AKIAALICE00000000001", Some("Alice")),
            },
            Command::DeleteAccessKey {
                access_key_id: "AKIAALICE00000000001".into(),
            },
            "Cannot delete entity, must delete access keys first.",
        ),
        (
            put_inline(as_user("Alice"), "inline", doc("lambda:GetFunction")),
            delete_inline(as_user("Alice"), "inline"),
            "Cannot delete entity, must delete policies first.",
        ),
        (
            attach(as_user("Alice"), builtin),
            detach(as_user("Alice"), builtin),
            "Cannot delete entity, must detach all policies first.",
        ),
    ];
    for (add, undo, message) in blockers {
        ok(&mut h, add).await;
        let before = stored_user(&h, "Alice");
        let e = err(&mut h, delete_user("alice")).await;
        assert_eq!(e.kind, ErrorKind::DeleteConflict, "{message}");
        assert_eq!(e.message, message);
        assert_eq!(
            stored_user(&h, "Alice"),
            before,
            "a refused delete changes nothing"
        );
        ok(&mut h, undo).await;
    }
    assert_eq!(
        stored_user(&h, "Alice"),
        Some(user("Alice")),
        "back to bare"
    );

    // Bare: deleted (by any case of its name), and the key is gone.
    ok(&mut h, delete_user("alice")).await;
    assert!(stored_user(&h, "Alice").is_none());
    assert!(h.list(&keys::iam_users_of(ACCOUNT)).is_empty());
    let e = err(&mut h, delete_user("Alice")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "The user with name Alice cannot be found.");

    // The name is free again, in any case.
    ok(&mut h, create_user("ALICE")).await;
    assert_eq!(stored_user(&h, "alice").unwrap().name, "ALICE");
}

#[tokio::test]
async fn a_users_access_keys_are_listed_on_it_and_bounded() {
    let mut h = harness().await;
    ok(&mut h, create_user("Bob")).await;
    let put = |id: &str, user_name: Option<&str>| Command::PutAccessKey {
        key: access_key(id, user_name),
    };

    ok(&mut h, put("AKIABOB1", Some("Bob"))).await;
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB1"]);
    assert_eq!(
        stored_key(&h, "AKIABOB1"),
        Some(access_key("AKIABOB1", Some("Bob")))
    );
    ok(&mut h, put("AKIABOB2", Some("Bob"))).await;
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB1", "AKIABOB2"]);

    // A third: over IAM's quota, and nothing is written.
    let e = err(&mut h, put("AKIABOB3", Some("Bob"))).await;
    assert_eq!(e.kind, ErrorKind::LimitExceeded);
    assert_eq!(e.message, "Cannot exceed quota for AccessKeysPerUser: 2");
    assert!(stored_key(&h, "AKIABOB3").is_none());
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB1", "AKIABOB2"]);

    // A key for a user that does not exist.
    let e = err(&mut h, put("AKIANOBODY", Some("nobody"))).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "The user with name nobody cannot be found.");
    assert!(stored_key(&h, "AKIANOBODY").is_none());

    // Deleting one takes it off the user, and makes room for another.
    ok(
        &mut h,
        Command::DeleteAccessKey {
            access_key_id: "AKIABOB1".into(),
        },
    )
    .await;
    assert!(stored_key(&h, "AKIABOB1").is_none());
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB2"]);
    let e = err(
        &mut h,
        Command::DeleteAccessKey {
            access_key_id: "AKIABOB1".into(),
        },
    )
    .await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    ok(&mut h, put("AKIABOB3", Some("Bob"))).await;
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB2", "AKIABOB3"]);

    // Turning a key off and on again keeps it on the user.
    let set = |id: &str, active: bool| Command::SetAccessKeyActive {
        access_key_id: id.into(),
        active,
    };
    ok(&mut h, set("AKIABOB2", false)).await;
    assert!(!stored_key(&h, "AKIABOB2").unwrap().active);
    assert!(stored_key(&h, "AKIABOB3").unwrap().active, "only that key");
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB2", "AKIABOB3"]);
    ok(&mut h, set("AKIABOB2", true)).await;
    assert_eq!(
        stored_key(&h, "AKIABOB2"),
        Some(access_key("AKIABOB2", Some("Bob")))
    );
    let e = err(&mut h, set("AKIAMISSING", false)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(
        e.message,
        "The Access Key with id AKIAMISSING cannot be found."
    );
    assert!(stored_key(&h, "AKIAMISSING").is_none());

    // The account's root keys belong to no user: no user record changes.
    let iam_before = h.list("iam/");
    ok(&mut h, put("AKIAROOT", None)).await;
    assert_eq!(stored_key(&h, "AKIAROOT").unwrap().user_name, None);
    ok(&mut h, set("AKIAROOT", false)).await;
    assert!(!stored_key(&h, "AKIAROOT").unwrap().active);
    ok(
        &mut h,
        Command::DeleteAccessKey {
            access_key_id: "AKIAROOT".into(),
        },
    )
    .await;
    assert_eq!(h.list("iam/"), iam_before);

    // A user's key cannot take an id that is already in use.
    ok(&mut h, put("AKIAROOT2", None)).await;
    ok(
        &mut h,
        Command::DeleteAccessKey {
            access_key_id: "AKIABOB3".into(),
        },
    )
    .await;
    let e = err(&mut h, put("AKIAROOT2", Some("Bob"))).await;
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    assert_eq!(stored_key(&h, "AKIAROOT2").unwrap().user_name, None);
    assert_eq!(user_keys(&h, "Bob"), ["AKIABOB2"]);
}

// ---- roles and inline policies ----

#[tokio::test]
async fn roles_are_unique_regardless_of_case_and_deleted_only_when_bare() {
    let mut h = harness().await;
    ok(&mut h, create_role("Deployer")).await;
    assert_eq!(stored_role(&h, "deployer"), Some(role("Deployer")));

    let e = err(&mut h, create_role("deployer")).await;
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    assert_eq!(e.message, "Role with name deployer already exists.");
    assert_eq!(stored_role(&h, "Deployer"), Some(role("Deployer")));

    let stray = IamRole {
        account_id: NO_ACCOUNT.into(),
        ..role("Deployer")
    };
    let e = err(&mut h, Command::CreateIamRole { role: stray }).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert!(entity(&h, &keys::iam_role(NO_ACCOUNT, "Deployer")).is_none());

    // A user and a role may share a name.
    ok(&mut h, create_user("Deployer")).await;

    ok(
        &mut h,
        put_inline(as_role("Deployer"), "p", doc("s3:GetObject")),
    )
    .await;
    let e = err(&mut h, delete_role("Deployer")).await;
    assert_eq!(e.kind, ErrorKind::DeleteConflict);
    assert_eq!(
        e.message,
        "Cannot delete entity, must delete policies first."
    );
    ok(&mut h, delete_inline(as_role("Deployer"), "p")).await;

    let builtin = BUILTIN_POLICIES[1].arn;
    ok(&mut h, attach(as_role("Deployer"), builtin)).await;
    let e = err(&mut h, delete_role("DEPLOYER")).await;
    assert_eq!(e.kind, ErrorKind::DeleteConflict);
    assert_eq!(
        e.message,
        "Cannot delete entity, must detach all policies first."
    );
    assert_eq!(stored_role(&h, "Deployer").unwrap().attached, [builtin]);
    ok(&mut h, detach(as_role("Deployer"), builtin)).await;

    ok(&mut h, delete_role("DEPLOYER")).await;
    assert!(stored_role(&h, "Deployer").is_none());
    assert!(h.list(&keys::iam_roles_of(ACCOUNT)).is_empty());
    assert!(
        stored_user(&h, "Deployer").is_some(),
        "the user is another entity"
    );
    let e = err(&mut h, delete_role("Deployer")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "The role with name Deployer cannot be found.");

    // Inline policies and attachments need the principal to exist.
    let e = err(&mut h, put_inline(as_role("Deployer"), "p", doc("s3:*"))).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    let e = err(&mut h, attach(as_role("Deployer"), builtin)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
}

#[tokio::test]
async fn a_roles_inline_policies_are_replaced_by_name_and_bounded_in_sum() {
    let mut h = harness().await;
    ok(&mut h, create_role("Deployer")).await;
    let me = || as_role("Deployer");

    // Same name: replaced, not added.
    ok(&mut h, put_inline(me(), "p1", doc_of_size(100))).await;
    ok(&mut h, put_inline(me(), "p1", doc_of_size(200))).await;
    assert_eq!(
        stored_role(&h, "Deployer").unwrap().inline_policies,
        BTreeMap::from([("p1".to_string(), doc_of_size(200))])
    );

    // Up to the quota exactly (whitespace not counted)...
    let rest = iam::ROLE_INLINE_POLICY_MAX - 200;
    ok(&mut h, put_inline(me(), "big", doc_of_size(rest))).await;
    let full = stored_role(&h, "Deployer").unwrap();
    assert_eq!(full.inline_policies.len(), 2);

    // ...and not one character more, whether added or grown by a replacement.
    for cmd in [
        put_inline(me(), "p2", doc_of_size(10)),
        put_inline(me(), "p1", doc_of_size(201)),
    ] {
        let e = err(&mut h, cmd).await;
        assert_eq!(e.kind, ErrorKind::LimitExceeded);
        assert!(
            e.message.contains(&iam::ROLE_INLINE_POLICY_MAX.to_string())
                && e.message.contains("role Deployer"),
            "{}",
            e.message
        );
        assert_eq!(
            stored_role(&h, "Deployer").unwrap(),
            full,
            "the role is unchanged"
        );
    }

    // A replacement counts the new document only.
    ok(&mut h, put_inline(me(), "p1", doc_of_size(150))).await;
    ok(&mut h, put_inline(me(), "p2", doc_of_size(50))).await;
    assert_eq!(
        stored_role(&h, "Deployer")
            .unwrap()
            .inline_policies
            .keys()
            .collect::<Vec<_>>(),
        ["big", "p1", "p2"]
    );

    // Deleting one that is not there.
    let e = err(&mut h, delete_inline(me(), "nope")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "The role policy with name nope cannot be found.");
    ok(&mut h, delete_inline(me(), "big")).await;
    let e = err(&mut h, delete_inline(me(), "big")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(
        stored_role(&h, "Deployer")
            .unwrap()
            .inline_policies
            .keys()
            .collect::<Vec<_>>(),
        ["p1", "p2"]
    );
}

#[tokio::test]
async fn a_users_inline_policies_have_the_smaller_quota() {
    let mut h = harness().await;
    ok(&mut h, create_user("Carol")).await;
    ok(&mut h, create_role("Carol")).await;
    let big = doc_of_size(iam::USER_INLINE_POLICY_MAX + 1);

    ok(
        &mut h,
        put_inline(
            as_user("Carol"),
            "p",
            doc_of_size(iam::USER_INLINE_POLICY_MAX),
        ),
    )
    .await;
    let before = stored_user(&h, "Carol").unwrap();
    let e = err(&mut h, put_inline(as_user("Carol"), "p", big.clone())).await;
    assert_eq!(e.kind, ErrorKind::LimitExceeded);
    assert!(e.message.contains("user Carol"), "{}", e.message);
    assert_eq!(stored_user(&h, "Carol").unwrap(), before);

    // The role of the same name has its own, larger quota.
    ok(&mut h, put_inline(as_role("Carol"), "p", big)).await;

    let e = err(&mut h, delete_inline(as_user("Carol"), "q")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "The user policy with name q cannot be found.");
}

// ---- managed policies ----

#[tokio::test]
async fn managed_policies_count_their_attachments() {
    let mut h = harness().await;
    ok(&mut h, create_policy("Deploy")).await;
    assert_eq!(stored_policy(&h, "deploy"), Some(managed("Deploy")));
    let e = err(&mut h, create_policy("DEPLOY")).await;
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    assert_eq!(
        e.message,
        "A policy called DEPLOY already exists. Duplicate names are not allowed."
    );
    let stray = ManagedPolicy {
        account_id: NO_ACCOUNT.into(),
        ..managed("Deploy")
    };
    assert_eq!(
        err(&mut h, Command::CreateManagedPolicy { policy: stray })
            .await
            .kind,
        ErrorKind::ResourceNotFound
    );

    ok(&mut h, create_role("r")).await;
    ok(&mut h, create_user("u")).await;
    let arn = managed("Deploy").arn();
    assert_eq!(arn, format!("arn:aws:iam::{ACCOUNT}:policy/Deploy"));

    ok(&mut h, attach(as_role("r"), &arn)).await;
    assert_eq!(attachment_count(&h, "Deploy"), 1);
    assert_eq!(
        stored_role(&h, "r").unwrap().attached,
        std::slice::from_ref(&arn)
    );
    ok(&mut h, attach(as_user("u"), &arn)).await;
    assert_eq!(attachment_count(&h, "Deploy"), 2);
    assert_eq!(
        stored_user(&h, "u").unwrap().attached,
        std::slice::from_ref(&arn)
    );

    // Attaching again changes nothing.
    ok(&mut h, attach(as_role("r"), &arn)).await;
    assert_eq!(attachment_count(&h, "Deploy"), 2);
    assert_eq!(
        stored_role(&h, "r").unwrap().attached,
        std::slice::from_ref(&arn)
    );

    // Attached: cannot be deleted.
    let e = err(&mut h, delete_managed("Deploy")).await;
    assert_eq!(e.kind, ErrorKind::DeleteConflict);
    assert_eq!(e.message, "Cannot delete a policy attached to entities.");
    assert!(stored_policy(&h, "Deploy").is_some());

    ok(&mut h, detach(as_role("r"), &arn)).await;
    assert_eq!(attachment_count(&h, "Deploy"), 1);
    assert!(stored_role(&h, "r").unwrap().attached.is_empty());
    // Not attached (any more): nothing to detach.
    let e = err(&mut h, detach(as_role("r"), &arn)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, format!("Policy {arn} was not found."));
    assert_eq!(attachment_count(&h, "Deploy"), 1);
    assert_eq!(
        err(&mut h, delete_managed("Deploy")).await.kind,
        ErrorKind::DeleteConflict
    );

    ok(&mut h, detach(as_user("u"), &arn)).await;
    assert_eq!(attachment_count(&h, "Deploy"), 0);
    ok(&mut h, delete_managed("deploy")).await;
    assert!(stored_policy(&h, "Deploy").is_none());
    assert!(h.list(&keys::iam_policies_of(ACCOUNT)).is_empty());
    let e = err(&mut h, delete_managed("Deploy")).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);

    // Gone: no longer attachable.
    let e = err(&mut h, attach(as_role("r"), &arn)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(
        e.message,
        format!("Policy {arn} does not exist or is not attachable.")
    );
    assert!(stored_role(&h, "r").unwrap().attached.is_empty());
}

#[tokio::test]
async fn built_in_and_unknown_policies() {
    let mut h = harness().await;
    ok(&mut h, create_role("r")).await;
    ok(&mut h, create_user("u")).await;

    // Built-in: attachable without any policy record, and not counted anywhere.
    let builtin = BUILTIN_POLICIES[0].arn;
    ok(&mut h, attach(as_role("r"), builtin)).await;
    ok(&mut h, attach(as_user("u"), builtin)).await;
    assert_eq!(stored_role(&h, "r").unwrap().attached, [builtin]);
    assert_eq!(stored_user(&h, "u").unwrap().attached, [builtin]);
    assert!(h.list(&keys::iam_policies_of(ACCOUNT)).is_empty());
    ok(&mut h, detach(as_role("r"), builtin)).await;
    assert!(stored_role(&h, "r").unwrap().attached.is_empty());
    assert_eq!(stored_user(&h, "u").unwrap().attached, [builtin]);

    // Unknown ARNs: this account's missing policy, another account's, a role's ARN.
    ok(&mut h, create_policy("Mine")).await;
    for unknown in [
        format!("arn:aws:iam::{ACCOUNT}:policy/Nope"),
        "arn:aws:iam::111111111111:policy/Mine".to_string(),
        "arn:aws:iam::aws:policy/NotShipped".to_string(),
        role("r").arn(),
    ] {
        let e = err(&mut h, attach(as_role("r"), &unknown)).await;
        assert_eq!(e.kind, ErrorKind::ResourceNotFound, "{unknown}");
        assert!(e.message.contains(&unknown), "{}", e.message);
    }
    assert!(stored_role(&h, "r").unwrap().attached.is_empty());
    assert_eq!(attachment_count(&h, "Mine"), 0);

    // A policy with a path is named by its full ARN only.
    let pathed = ManagedPolicy {
        path: "/team/".into(),
        ..managed("Pathed")
    };
    let arn = pathed.arn();
    assert_eq!(arn, format!("arn:aws:iam::{ACCOUNT}:policy/team/Pathed"));
    ok(&mut h, Command::CreateManagedPolicy { policy: pathed }).await;
    let e = err(
        &mut h,
        attach(
            as_role("r"),
            &format!("arn:aws:iam::{ACCOUNT}:policy/Pathed"),
        ),
    )
    .await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    ok(&mut h, attach(as_role("r"), &arn)).await;
    assert_eq!(attachment_count(&h, "Pathed"), 1);
    ok(&mut h, detach(as_role("r"), &arn)).await;
    assert_eq!(attachment_count(&h, "Pathed"), 0);

    // Detaching something never attached.
    let e = err(&mut h, detach(as_user("u"), &managed("Mine").arn())).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    let e = err(&mut h, detach(as_role("r"), builtin)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    // Or from someone who does not exist.
    let e = err(&mut h, detach(as_user("ghost"), builtin)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
}

#[tokio::test]
async fn attachments_per_principal_are_bounded() {
    let mut h = harness().await;
    ok(&mut h, create_role("r")).await;
    ok(&mut h, create_user("u")).await;
    let max = iam::ATTACHED_POLICIES_MAX;
    let names: Vec<String> = (0..=max).map(|i| format!("P{i:02}")).collect();
    for n in &names {
        ok(&mut h, create_policy(n)).await;
    }
    let (within, over) = names.split_at(max);
    let over = &over[0];

    for principal in [as_role("r"), as_user("u")] {
        for n in within {
            ok(&mut h, attach(principal.clone(), &arn_of(n))).await;
        }
        let e = err(&mut h, attach(principal.clone(), &arn_of(over))).await;
        assert_eq!(e.kind, ErrorKind::LimitExceeded, "{principal:?}");
        assert!(e.message.ends_with(&format!(": {max}")), "{}", e.message);
        // A built-in one counts too.
        let e = err(&mut h, attach(principal.clone(), BUILTIN_POLICIES[0].arn)).await;
        assert_eq!(e.kind, ErrorKind::LimitExceeded);
        // Re-attaching one already there is still fine.
        ok(&mut h, attach(principal.clone(), &arn_of(&within[0]))).await;
    }
    assert_eq!(stored_role(&h, "r").unwrap().attached.len(), max);
    assert_eq!(stored_user(&h, "u").unwrap().attached.len(), max);
    assert_eq!(attachment_count(&h, over), 0);
    for n in within {
        assert_eq!(attachment_count(&h, n), 2, "{n}");
    }

    // Detaching one makes room.
    ok(&mut h, detach(as_role("r"), &arn_of(&within[3]))).await;
    ok(&mut h, attach(as_role("r"), &arn_of(over))).await;
    assert_eq!(attachment_count(&h, &within[3]), 1);
    assert_eq!(attachment_count(&h, over), 1);
    assert_eq!(
        stored_role(&h, "r").unwrap().attached.last(),
        Some(&arn_of(over))
    );
}

// ---- function permissions ----

#[tokio::test]
async fn function_permissions_per_qualifier() {
    let mut h = harness().await;
    function_with_alias(&mut h).await;
    let mut revisions = vec![stored_function(&h, "f").revision_id];
    let current = |h: &Harness| stored_function(h, "f").revision_id;

    // Unqualified.
    let f = changed(&mut h, add_permission("", "s3", None)).await;
    assert_eq!(
        f.resource_policy,
        BTreeMap::from([(String::new(), vec![("s3".to_string(), statement("s3", 0))])])
    );
    assert_eq!(f, stored_function(&h, "f"), "the answer is what is stored");
    revisions.push(f.revision_id.clone());

    // The same sid again: refused, and nothing changes.
    let e = err(&mut h, add_permission("", "s3", None)).await;
    assert_eq!(e.kind, ErrorKind::ResourceConflict);
    assert!(e.message.contains("already exists"), "{}", e.message);
    assert_eq!(sids(&stored_function(&h, "f"), ""), ["s3"]);
    assert_eq!(current(&h), *revisions.last().unwrap());

    // A stale RevisionId: refused; the current one: accepted.
    for stale in [revisions[0].as_str(), "not-a-revision"] {
        let e = err(&mut h, add_permission("", "s4", Some(stale))).await;
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
        let e = err(&mut h, remove_permission("", "s3", Some(stale))).await;
        assert_eq!(e.kind, ErrorKind::PreconditionFailed);
    }
    assert_eq!(current(&h), *revisions.last().unwrap());
    let rev = current(&h);
    let f = changed(&mut h, add_permission("", "s4", Some(rev.as_str()))).await;
    assert_eq!(sids(&f, ""), ["s3", "s4"], "in the order added");
    revisions.push(f.revision_id.clone());

    // An alias and a version have their own statements; a sid may repeat across them.
    let f = changed(&mut h, add_permission("live", "s3", None)).await;
    revisions.push(f.revision_id.clone());
    let f = changed(&mut h, add_permission("1", "v1", None)).await;
    revisions.push(f.revision_id.clone());
    assert_eq!(qualifiers(&f), ["", "1", "live"]);
    assert_eq!(sids(&f, "live"), ["s3"]);
    assert_eq!(sids(&f, "1"), ["v1"]);

    // Qualifiers and functions that do not exist.
    let e = err(&mut h, add_permission("ghost", "s", None)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert!(e.message.contains("Alias not found"), "{}", e.message);
    assert_eq!(
        err(&mut h, add_permission("7", "s", None)).await.kind,
        ErrorKind::ResourceNotFound
    );
    assert_eq!(
        err(&mut h, remove_permission("ghost", "s3", None))
            .await
            .kind,
        ErrorKind::ResourceNotFound
    );
    let elsewhere = Command::AddFunctionPermission {
        key: key("nope"),
        qualifier: String::new(),
        statement_id: "s".into(),
        statement: statement("s", 0),
        expected_revision: None,
    };
    assert_eq!(
        err(&mut h, elsewhere).await.kind,
        ErrorKind::ResourceNotFound
    );
    assert!(entity(&h, &keys::function(&key("nope"))).is_none());

    // Unknown sids, including one that exists under another qualifier.
    let e = err(&mut h, remove_permission("", "nope", None)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(e.message, "Statement nope is not found in resource policy.");
    let e = err(&mut h, remove_permission("live", "s4", None)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
    assert_eq!(
        current(&h),
        *revisions.last().unwrap(),
        "failures change nothing"
    );

    // Removing: the last statement takes the qualifier's entry with it.
    let f = changed(&mut h, remove_permission("", "s3", None)).await;
    assert_eq!(sids(&f, ""), ["s4"]);
    revisions.push(f.revision_id.clone());
    let rev = current(&h);
    let f = changed(&mut h, remove_permission("", "s4", Some(rev.as_str()))).await;
    assert_eq!(qualifiers(&f), ["1", "live"]);
    revisions.push(f.revision_id.clone());

    // Every change gave the function a new RevisionId.
    let distinct: BTreeSet<&String> = revisions.iter().collect();
    assert_eq!(distinct.len(), revisions.len(), "{revisions:?}");

    // Deleting the alias drops its statements (only), and a new alias of the same name
    // does not inherit them.
    ok(
        &mut h,
        Command::DeleteAlias {
            key: key("f"),
            name: "live".into(),
        },
    )
    .await;
    assert_eq!(qualifiers(&stored_function(&h, "f")), ["1"]);
    ok(&mut h, create_alias("live")).await;
    let f = stored_function(&h, "f");
    assert_eq!(qualifiers(&f), ["1"]);
    assert_eq!(sids(&f, "1"), ["v1"]);
    let e = err(&mut h, remove_permission("live", "s3", None)).await;
    assert_eq!(e.kind, ErrorKind::ResourceNotFound);
}

#[tokio::test]
async fn a_function_policy_is_bounded_per_qualifier() {
    let mut h = harness().await;
    function_with_alias(&mut h).await;
    const LEN: usize = 1000;

    let mut accepted = 0usize;
    let refused = loop {
        let sid = format!("s{accepted:02}");
        let cmd = add_statement("", &sid, statement_of_len(&sid, LEN), None);
        match h.apply(cmd).await.result {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the policy grew without bound");
    };
    assert_eq!(refused.kind, ErrorKind::PolicyLengthExceeded);
    assert_eq!(
        refused.message,
        "The final policy size is bigger than the limit."
    );
    // 20 statements of 1000 bytes fit in 20 KB with room for the document around them;
    // a 21st does not.
    assert_eq!(accepted, 20);
    let before = stored_function(&h, "f");
    let total: usize = before.resource_policy[""]
        .iter()
        .map(|(_, s)| s.len())
        .sum();
    assert!(total <= limits::POLICY_MAX_BYTES, "{total}");
    assert_eq!(
        sids(&before, "").len(),
        accepted,
        "the refused one is not kept"
    );

    // Half of one does not fit either, and a refusal changes nothing.
    let half = add_statement("", "half", statement_of_len("half", LEN / 2), None);
    let e = err(&mut h, half).await;
    assert_eq!(e.kind, ErrorKind::PolicyLengthExceeded);
    assert_eq!(stored_function(&h, "f"), before);

    // The alias's policy is a separate document.
    ok(
        &mut h,
        add_statement("live", "big", statement_of_len("big", LEN), None),
    )
    .await;

    // Removing one makes room again.
    ok(&mut h, remove_permission("", "s00", None)).await;
    ok(
        &mut h,
        add_statement("", "again", statement_of_len("again", LEN), None),
    )
    .await;
    assert_eq!(sids(&stored_function(&h, "f"), "").len(), accepted);
}

// ---- determinism ----

/// A mix of IAM writes, some of which fail.
async fn script(h: &mut Harness) -> Vec<nimbus_meta::raft_types::Response> {
    h.create_function("f").await;
    let builtin = BUILTIN_POLICIES[1].arn;
    let policy_arn = managed("Deploy").arn();
    let cmds = vec![
        create_user("Dana"),
        create_user("dana"),
        create_role("Runner"),
        create_policy("Deploy"),
        attach(as_user("Dana"), &policy_arn),
        attach(as_role("Runner"), &policy_arn),
        attach(as_role("Runner"), builtin),
        put_inline(as_role("Runner"), "logs", doc("logs:*")),
        put_inline(
            as_user("Dana"),
            "big",
            doc_of_size(iam::USER_INLINE_POLICY_MAX + 1),
        ),
        Command::PutAccessKey {
            key: access_key("AKIADANA1", Some("Dana")),
        },
        Command::PutAccessKey {
            key: access_key("AKIADANA2", Some("dana")),
        },
        Command::PutAccessKey {
            key: access_key("AKIADANA3", Some("Dana")),
        },
        Command::PutAccessKey {
            key: access_key("AKIAROOT", None),
        },
        Command::SetAccessKeyActive {
            access_key_id: "AKIADANA1".into(),
            active: false,
        },
        Command::DeleteAccessKey {
            access_key_id: "AKIADANA2".into(),
        },
        detach(as_role("Runner"), &policy_arn),
        delete_managed("Deploy"),
        delete_role("Runner"),
        add_permission("", "a", None),
        add_permission("", "b", None),
        add_permission("", "a", None),
        remove_permission("", "a", None),
    ];
    let mut out = Vec::new();
    for cmd in cmds {
        out.push(h.apply(cmd).await);
    }
    out
}

#[tokio::test]
async fn the_same_iam_writes_give_the_same_state() {
    let mut a = harness().await;
    let mut b = harness().await;
    let ra = script(&mut a).await;
    let rb = script(&mut b).await;
    assert_eq!(ra, rb);
    assert!(
        ra.iter().any(|r| r.result.is_err()),
        "the script has failures"
    );
    for prefix in ["iam/", keys::ACCESS_KEY, keys::FUNCTION] {
        let (la, lb) = (a.list(prefix), b.list(prefix));
        assert!(!la.is_empty(), "{prefix}");
        assert_eq!(la, lb, "{prefix}");
    }
    // What the script left: Dana with one key (the third was over quota, the second
    // deleted) and the policy still attached to her, so it was not deleted; the role was
    // refused deletion (it still has its inline policy and the built-in).
    let dana = stored_user(&a, "dana").unwrap();
    assert_eq!(dana.access_keys, ["AKIADANA1"]);
    assert!(!stored_key(&a, "AKIADANA1").unwrap().active);
    assert_eq!(dana.attached, [managed("Deploy").arn()]);
    assert!(dana.inline_policies.is_empty());
    assert_eq!(attachment_count(&a, "Deploy"), 1);
    assert!(stored_role(&a, "Runner").is_some());
    assert_eq!(sids(&stored_function(&a, "f"), ""), ["b"]);
}

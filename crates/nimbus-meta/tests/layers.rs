//! Layer versions in the state machine: numbering that survives deletes, sharing, and
//! the checks a function's layers get when it is configured (applied deterministically,
//! whatever the gateway resolved).

use std::collections::BTreeMap;

use nimbus_types::{
    Command, CommandOutput, ErrorKind, FunctionConfig, LayerKey, LayerRef, LayerStatement,
    LayerVersion,
};

mod common;
use common::*;

fn layer(name: &str) -> LayerKey {
    LayerKey::new(ACCOUNT, REGION, name)
}

fn publish_cmd(name: &str) -> Command {
    Command::PublishLayerVersion {
        key: layer(name),
        description: String::new(),
        compatible_runtimes: vec!["python3.11".into()],
        compatible_architectures: vec![],
        license_info: String::new(),
        code: code(),
        now_ms: 5,
    }
}

async fn publish(h: &mut Harness, name: &str) -> LayerVersion {
    match h.apply(publish_cmd(name)).await.result {
        Ok(CommandOutput::LayerVersion(v)) => *v,
        other => panic!("publish failed: {other:?}"),
    }
}

fn uses(arns: &[&str]) -> FunctionConfig {
    FunctionConfig {
        layers: arns
            .iter()
            .map(|a| LayerRef {
                arn: a.to_string(),
                code: code(),
            })
            .collect(),
        ..config(128)
    }
}

fn create(name: &str, account: &str, c: FunctionConfig) -> Command {
    Command::CreateFunction {
        key: nimbus_types::FunctionKey::new(account, REGION, name),
        config: c,
        code: code(),
        tags: BTreeMap::new(),
        publish: false,
        now_ms: 1,
    }
}

#[tokio::test]
async fn version_numbers_are_never_reused() {
    let mut h = Harness::new();
    h.setup().await;
    assert_eq!(publish(&mut h, "deps").await.number, 1);
    assert_eq!(publish(&mut h, "deps").await.number, 2);
    for n in [1, 2, 2] {
        let del = Command::DeleteLayerVersion {
            key: layer("deps"),
            version: n,
        };
        assert!(h.apply(del).await.result.is_ok(), "deleting twice is fine");
    }
    assert_eq!(publish(&mut h, "deps").await.number, 3);
}

#[tokio::test]
async fn a_function_gets_only_layers_that_exist_and_are_shared_with_it() {
    let mut h = Harness::new();
    h.setup().await;
    let v = publish(&mut h, "deps").await;
    let arn = v.arn();
    let kind = |r: nimbus_meta::raft_types::Response| r.result.unwrap_err().kind;

    // Missing, other region, other content: as if it did not exist.
    for bad in [
        format!("{}:9", layer("deps").arn()),
        arn.replace("us-east-1", "eu-west-1"),
    ] {
        let r = h.apply(create("f", ACCOUNT, uses(&[&bad]))).await;
        assert_eq!(kind(r), ErrorKind::InvalidParameterValue, "{bad}");
    }
    let mut tampered = uses(&[&arn]);
    tampered.layers[0].code.sha256 = "b3RoZXI=".into();
    assert_eq!(
        kind(h.apply(create("f", ACCOUNT, tampered)).await),
        ErrorKind::InvalidParameterValue
    );
    assert!(h
        .apply(create("f", ACCOUNT, uses(&[&arn])))
        .await
        .result
        .is_ok());

    // Another account: refused until shared with it.
    let other = "111111111111";
    h.apply(Command::PutAccount {
        account_id: other.into(),
    })
    .await
    .result
    .unwrap();
    assert_eq!(
        kind(h.apply(create("g", other, uses(&[&arn]))).await),
        ErrorKind::AccessDenied
    );
    let share =
        |sid: &str, principal: &str, org: Option<&str>| Command::AddLayerVersionPermission {
            key: layer("deps"),
            version: 1,
            statement: LayerStatement {
                statement_id: sid.into(),
                action: "lambda:GetLayerVersion".into(),
                principal: principal.into(),
                organization_id: org.map(str::to_string),
            },
            expected_revision: None,
        };
    // Limited to an organization: Nimbus has none, so this shares with nobody.
    h.apply(share("org", "*", Some("o-abcdefghij")))
        .await
        .result
        .unwrap();
    assert_eq!(
        kind(h.apply(create("g", other, uses(&[&arn]))).await),
        ErrorKind::AccessDenied
    );
    h.apply(share("acct", other, None)).await.result.unwrap();
    assert_eq!(
        kind(h.apply(share("acct", "*", None)).await),
        ErrorKind::ResourceConflict
    );
    assert!(h
        .apply(create("g", other, uses(&[&arn])))
        .await
        .result
        .is_ok());

    // Deleted afterwards: the function keeps it through other updates; nobody new gets it.
    h.apply(Command::DeleteLayerVersion {
        key: layer("deps"),
        version: 1,
    })
    .await
    .result
    .unwrap();
    let mut c = uses(&[&arn]);
    c.memory_mb = 256;
    let update = Command::UpdateFunctionConfiguration {
        key: key("f"),
        config: c,
        expected_revision: None,
        now_ms: 9,
    };
    assert!(h.apply(update).await.result.is_ok());
    assert_eq!(
        kind(h.apply(create("h", ACCOUNT, uses(&[&arn]))).await),
        ErrorKind::InvalidParameterValue
    );
}

#[tokio::test]
async fn a_layer_policy_is_bounded_like_lambdas() {
    let mut h = Harness::new();
    h.setup().await;
    publish(&mut h, "deps").await;
    let mut accepted = 0;
    let refused = loop {
        let cmd = Command::AddLayerVersionPermission {
            key: layer("deps"),
            version: 1,
            statement: LayerStatement {
                statement_id: format!("{accepted:0>100}"),
                action: "lambda:GetLayerVersion".into(),
                principal: "210987654321".into(),
                organization_id: None,
            },
            expected_revision: None,
        };
        match h.apply(cmd).await.result {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "the policy grew without bound");
    };
    assert_eq!(refused.kind, ErrorKind::PolicyLengthExceeded);
    assert!(
        (50..200).contains(&accepted),
        "{accepted} statements of ~200 bytes in 20 KB"
    );
}

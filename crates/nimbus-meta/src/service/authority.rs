//! Who may call what on a metadata node, by the role in the caller's certificate.
//!
//! Two levels: [`policy`] is the per-method table the transport's authority layer
//! applies before a service sees the call; [`may_write`] and [`may_query`] refine
//! `Write` and `Read` by what is written or read. Metadata nodes (`meta`) may do
//! anything a client may, because followers forward clients' calls to the leader after
//! checking them here.
//!
//! | caller  | may |
//! |---------|-----|
//! | meta    | Raft; every call (forwarded on behalf of a checked client) |
//! | admin   | accounts, access keys, regions, edge locations, membership, backup, reads (no secrets) |
//! | gateway | function metadata and code, async events, leases, IAM users, roles, policies and users' access keys (not root keys), reads including access-key secrets and the session-token key |
//! | worker  | register and deregister itself (ids `CERTNAME+…`), read the worker registry, fetch code |

use nimbus_tls::{Identity, Role};
use nimbus_types::{keys, Command, Query};

use Role::{Admin, Gateway, Meta, Worker};

const RAFT: &str = "/nimbus.meta.v1.Raft/";
const METADATA: &str = "/nimbus.meta.v1.Metadata/";

/// The roles that may call each gRPC method; unlisted methods are refused.
pub fn policy(path: &str) -> &'static [Role] {
    if let Some(m) = path.strip_prefix(RAFT) {
        return match m {
            "AppendEntries" | "Vote" | "InstallSnapshot" => &[Meta],
            _ => &[],
        };
    }
    let Some(m) = path.strip_prefix(METADATA) else {
        return &[];
    };
    match m {
        // Refined by `may_write` / `may_query`.
        "Write" | "Read" => &[Meta, Admin, Gateway, Worker],
        // The watch carries every change of every account (functions' environment
        // variables among them): gateways and the operator only.
        "Watch" => &[Meta, Admin, Gateway],
        // Workers fetch the code they run; gateways check packages; admins never need code.
        "FetchCode" => &[Meta, Gateway, Worker],
        "AcquireLease" => &[Meta, Gateway],
        "NodeStatus" => &[Meta, Admin, Gateway, Worker],
        "AddMember" | "RemoveMember" | "Backup" => &[Meta, Admin],
        _ => &[],
    }
}

/// May `caller` write `cmd`? `None` (plaintext) may write anything.
pub fn may_write(caller: Option<&Identity>, cmd: &Command) -> Result<(), String> {
    let Some(id) = caller else { return Ok(()) };
    let ok = match id.role {
        Meta => true,
        Admin => matches!(
            cmd,
            Command::PutAccount { .. }
                | Command::SetAccountLimits { .. }
                | Command::PutAccessKey { .. }
                | Command::DeleteAccessKey { .. }
                | Command::PutRegion { .. }
                | Command::PutEdgeLocation { .. }
                | Command::PutEdgeBudget { .. }
                | Command::RetireNode { .. }
                | Command::DeregisterWorker { .. }
        ),
        Gateway => {
            matches!(
                cmd,
                Command::PutCodeChunk { .. }
                    | Command::CommitCode { .. }
                    | Command::CreateFunction { .. }
                    | Command::UpdateFunctionCode { .. }
                    | Command::UpdateFunctionConfiguration { .. }
                    | Command::DeleteFunction { .. }
                    | Command::PublishVersion { .. }
                    | Command::CreateAlias { .. }
                    | Command::UpdateAlias { .. }
                    | Command::DeleteAlias { .. }
                    | Command::PutFunctionConcurrency { .. }
                    | Command::DeleteFunctionConcurrency { .. }
                    | Command::PutProvisionedConcurrency { .. }
                    | Command::DeleteProvisionedConcurrency { .. }
                    | Command::PutEventInvokeConfig { .. }
                    | Command::DeleteEventInvokeConfig { .. }
                    | Command::PutFunctionUrlConfig { .. }
                    | Command::DeleteFunctionUrlConfig { .. }
                    | Command::TagResource { .. }
                    | Command::UntagResource { .. }
                    | Command::EnqueueEvent { .. }
                    | Command::ClaimEvent { .. }
                    | Command::RetryEvent { .. }
                    | Command::CompleteEvent { .. }
                    | Command::PublishLayerVersion { .. }
                    | Command::DeleteLayerVersion { .. }
                    | Command::AddLayerVersionPermission { .. }
                    | Command::RemoveLayerVersionPermission { .. }
                    | Command::AddFunctionPermission { .. }
                    | Command::DeployToEdge { .. }
                    | Command::RemoveFromEdge { .. }
                    | Command::RemoveFunctionPermission { .. }
                    | Command::SetAccessKeyActive { .. }
                    | Command::CreateIamUser { .. }
                    | Command::DeleteIamUser { .. }
                    | Command::CreateIamRole { .. }
                    | Command::DeleteIamRole { .. }
                    | Command::PutInlinePolicy { .. }
                    | Command::DeleteInlinePolicy { .. }
                    | Command::CreateManagedPolicy { .. }
                    | Command::DeleteManagedPolicy { .. }
                    | Command::AttachPolicy { .. }
                    | Command::DetachPolicy { .. }
                    | Command::DeleteAccessKey { .. }
            ) || matches!(
                // IAM users' keys (`CreateAccessKey`); an account's root keys are the
                // operator's to make.
                cmd,
                Command::PutAccessKey { key } if key.user_name.is_some()
            )
        }
        // A worker speaks for itself only: its id starts with its certificate's name.
        Worker => match cmd {
            Command::RegisterWorker { worker } => nimbus_tls::speaks_for_worker(id, &worker.id),
            Command::DeregisterWorker { id: w } => nimbus_tls::speaks_for_worker(id, w),
            _ => false,
        },
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{id} may not write {}", command_name(cmd)))
    }
}

/// May `caller` ask `query`? `None` (plaintext) may ask anything.
pub fn may_query(caller: Option<&Identity>, query: &Query) -> Result<(), String> {
    let Some(id) = caller else { return Ok(()) };
    let ok = match (id.role, query) {
        (Meta | Gateway, _) => true,
        // Decrypted secrets and event payloads leave a metadata node only for gateways.
        (Admin, Query::Get { .. } | Query::List { .. }) => true,
        (Worker, Query::Get { key }) => key.starts_with(keys::WORKER),
        (Worker, Query::List { prefix, .. }) => prefix.starts_with(keys::WORKER),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{id} may not read {}", query_name(query)))
    }
}

fn command_name(cmd: &Command) -> String {
    // The variant's name, without its fields (which may hold secrets).
    let debug = format!("{cmd:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

fn query_name(q: &Query) -> String {
    match q {
        Query::Get { key } | Query::List { prefix: key, .. } => format!("keys under {key:?}"),
        Query::AccessKeySecret { .. } => "access-key secrets".into(),
        Query::SessionSigningKey => "the session-token key".into(),
        Query::EventPayload { .. } => "event payloads".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(role: Role, name: &str) -> Identity {
        Identity::new(role, name).unwrap()
    }

    #[test]
    fn only_meta_speaks_raft_and_only_admin_changes_membership() {
        for r in Role::ALL {
            assert_eq!(
                policy("/nimbus.meta.v1.Raft/AppendEntries").contains(&r),
                r == Meta
            );
            assert_eq!(
                policy("/nimbus.meta.v1.Metadata/AddMember").contains(&r),
                matches!(r, Meta | Admin)
            );
        }
        assert!(policy("/nimbus.meta.v1.Metadata/Nope").is_empty());
        assert!(policy("/other.Service/Write").is_empty());
        assert!(!policy("/nimbus.meta.v1.Metadata/Watch").contains(&Worker));
    }

    #[test]
    fn accounts_are_the_operators_and_workers_speak_for_themselves() {
        let acct = Command::PutAccount {
            account_id: "123456789012".into(),
        };
        assert!(may_write(Some(&id(Admin, "cli")), &acct).is_ok());
        let e = may_write(Some(&id(Gateway, "gw")), &acct).unwrap_err();
        assert_eq!(e, "gateway gw may not write PutAccount");
        assert!(may_write(Some(&id(Worker, "w1")), &acct).is_err());
        let dereg = |w: &str| Command::DeregisterWorker { id: w.into() };
        assert!(may_write(Some(&id(Worker, "w1")), &dereg("w1+x")).is_ok());
        assert!(may_write(Some(&id(Worker, "w1")), &dereg("w2+x")).is_err());
        assert!(may_write(None, &acct).is_ok());
    }

    #[test]
    fn edge_budgets_are_the_operators_alone() {
        // A gateway holds a share of a budget; it must not be able to grow it.
        let budget = Command::PutEdgeBudget {
            budget: nimbus_types::EdgeBudget {
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                location: "fra1".into(),
                slots: 100,
                gateways: vec!["fra1-a".into()],
            },
        };
        assert!(may_write(Some(&id(Admin, "cli")), &budget).is_ok());
        let e = may_write(Some(&id(Gateway, "fra1-a")), &budget).unwrap_err();
        assert_eq!(e, "gateway fra1-a may not write PutEdgeBudget");
        assert!(may_write(Some(&id(Worker, "w1")), &budget).is_err());
    }

    #[test]
    fn gateways_make_iam_users_keys_but_never_root_keys() {
        let key = |user: Option<&str>| Command::PutAccessKey {
            key: nimbus_types::AccessKey {
                access_key_id: "AKIAX".into(),
                account_id: "123456789012".into(),
                secret_ciphertext: b"s".to_vec(),
                user_name: user.map(str::to_string),
                active: true,
                created_ms: 0,
            },
        };
        let gw = id(Gateway, "gw");
        assert!(may_write(Some(&gw), &key(Some("alice"))).is_ok());
        assert_eq!(
            may_write(Some(&gw), &key(None)).unwrap_err(),
            "gateway gw may not write PutAccessKey"
        );
        assert!(may_write(Some(&id(Admin, "cli")), &key(None)).is_ok());
        assert!(may_write(Some(&id(Worker, "w1")), &key(Some("alice"))).is_err());
        let session = Query::SessionSigningKey;
        assert!(may_query(Some(&gw), &session).is_ok());
        assert!(may_query(Some(&id(Admin, "cli")), &session).is_err());
        assert!(may_query(Some(&id(Worker, "w1")), &session).is_err());
    }

    #[test]
    fn secrets_go_to_gateways_only() {
        let secret = Query::AccessKeySecret {
            access_key_id: "AKIA".into(),
        };
        assert!(may_query(Some(&id(Gateway, "gw")), &secret).is_ok());
        assert!(may_query(Some(&id(Admin, "cli")), &secret).is_err());
        assert!(may_query(Some(&id(Worker, "w1")), &secret).is_err());
        let fns = Query::List {
            prefix: keys::FUNCTION.into(),
            start_after: None,
            limit: 10,
        };
        assert!(may_query(Some(&id(Worker, "w1")), &fns).is_err());
        let workers = Query::List {
            prefix: keys::WORKER.into(),
            start_after: None,
            limit: 10,
        };
        assert!(may_query(Some(&id(Worker, "w1")), &workers).is_ok());
    }
}

//! The state machine's key layout. Keys are UTF-8 paths so prefixes list naturally;
//! numbers are zero-padded so byte order is numeric order.

use crate::model::{FunctionKey, LayerKey};

pub const ACCOUNT: &str = "acct/";
pub const ACCESS_KEY: &str = "akey/";
pub const REGION: &str = "region/";
pub const FUNCTION: &str = "fn/";
pub const VERSION: &str = "ver/";
pub const ALIAS: &str = "alias/";
pub const CODE: &str = "code/";
pub const WORKER: &str = "worker/";
pub const RETIRED_NODE: &str = "node-retired/";
/// The cluster key's check value (one record).
pub const CLUSTER_KEY_CHECK: &str = "cluster/key-check";
pub const LAYER: &str = "layer/";
pub const LAYER_VERSION: &str = "layerver/";
/// IAM users, roles and customer managed policies, per account. IAM names are unique
/// regardless of case, so the key holds the name lower-cased.
pub const IAM_USER: &str = "iam/user/";
pub const IAM_ROLE: &str = "iam/role/";
pub const IAM_POLICY: &str = "iam/policy/";
/// Function URL routes by URL id (ids are global and random).
pub const URL_ROUTE: &str = "url/";
/// Queued async events; every gateway's dispatcher watches this prefix.
pub const EVENT: &str = "event/";
/// Edge locations' concurrency budgets, per account and region.
pub const EDGE_BUDGET: &str = "edgebudget/";

pub fn account(id: &str) -> String {
    format!("{ACCOUNT}{id}")
}
pub fn access_key(id: &str) -> String {
    format!("{ACCESS_KEY}{id}")
}
pub fn region(name: &str) -> String {
    format!("{REGION}{name}")
}
/// All functions of an account in a region.
pub fn functions_of(account_id: &str, region: &str) -> String {
    format!("{FUNCTION}{account_id}/{region}/")
}
pub fn function(k: &FunctionKey) -> String {
    format!("{FUNCTION}{}/{}/{}", k.account_id, k.region, k.name)
}
pub fn versions_of(k: &FunctionKey) -> String {
    format!("{VERSION}{}/{}/{}/", k.account_id, k.region, k.name)
}
pub fn version(k: &FunctionKey, n: u64) -> String {
    format!("{}{n:010}", versions_of(k))
}
pub fn aliases_of(k: &FunctionKey) -> String {
    format!("{ALIAS}{}/{}/{}/", k.account_id, k.region, k.name)
}
pub fn alias(k: &FunctionKey, name: &str) -> String {
    format!("{}{name}", aliases_of(k))
}
/// Code keys use the URL-safe form of the base64 hash, since `/` is a separator.
pub fn code(sha256_b64: &str) -> String {
    format!("{CODE}{}", sha256_b64.replace('/', "_").replace('+', "-"))
}
pub fn worker(id: &str) -> String {
    format!("{WORKER}{id}")
}
pub fn retired_node(id: u64) -> String {
    format!("{RETIRED_NODE}{id:020}")
}
/// All edge budgets of an account in a region.
pub fn edge_budgets_of(account_id: &str, region: &str) -> String {
    format!("{EDGE_BUDGET}{account_id}/{region}/")
}
pub fn edge_budget(account_id: &str, region: &str, location: &str) -> String {
    format!("{}{location}", edge_budgets_of(account_id, region))
}
pub fn event(id: &str) -> String {
    format!("{EVENT}{id}")
}
/// All layers of an account in a region.
pub fn layers_of(account_id: &str, region: &str) -> String {
    format!("{LAYER}{account_id}/{region}/")
}
pub fn layer(k: &LayerKey) -> String {
    format!("{}{}", layers_of(&k.account_id, &k.region), k.name)
}
pub fn layer_versions_of(k: &LayerKey) -> String {
    format!("{LAYER_VERSION}{}/{}/{}/", k.account_id, k.region, k.name)
}
pub fn layer_version(k: &LayerKey, n: u64) -> String {
    format!("{}{n:010}", layer_versions_of(k))
}

pub fn iam_users_of(account_id: &str) -> String {
    format!("{IAM_USER}{account_id}/")
}
pub fn iam_user(account_id: &str, name: &str) -> String {
    format!("{}{}", iam_users_of(account_id), name.to_lowercase())
}
pub fn iam_roles_of(account_id: &str) -> String {
    format!("{IAM_ROLE}{account_id}/")
}
pub fn iam_role(account_id: &str, name: &str) -> String {
    format!("{}{}", iam_roles_of(account_id), name.to_lowercase())
}
pub fn iam_policies_of(account_id: &str) -> String {
    format!("{IAM_POLICY}{account_id}/")
}
pub fn iam_policy(account_id: &str, name: &str) -> String {
    format!("{}{}", iam_policies_of(account_id), name.to_lowercase())
}
pub fn url_route(url_id: &str) -> String {
    format!("{URL_ROUTE}{url_id}")
}

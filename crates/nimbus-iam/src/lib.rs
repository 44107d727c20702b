//! AWS IAM policies for Nimbus: the JSON policy language and its evaluation.
//!
//! Nimbus gateways authorize every Lambda, CloudWatch Logs, IAM and STS call in memory
//! against AWS-style policies. This crate is that logic and nothing else — no I/O, no
//! storage — so it can be tested exhaustively and called on the hot path:
//!
//! - [`document`]: parsing and validating policy documents (with IAM's own error
//!   messages) and compiling them once, so evaluation does no parsing.
//! - [`matching`]: IAM's `*` / `?` wildcard language for actions and ARNs.
//! - [`condition`]: the `Condition` element and its operators.
//! - [`principal`]: who is asking, and the `Principal` element of resource and trust
//!   policies.
//! - [`context`]: a request's condition keys.
//! - [`evaluate`]: explicit deny / allow / implicit deny for identity, resource and trust
//!   policies, and AWS's same-account versus cross-account combination.
//!
//! ```
//! use nimbus_iam::{evaluate_identity, Context, Decision, PolicyDocument, Principal, Request};
//!
//! let policy = PolicyDocument::parse(r#"{
//!     "Version": "2012-10-17",
//!     "Statement": {
//!         "Effect": "Allow",
//!         "Action": "lambda:Invoke*",
//!         "Resource": "arn:aws:lambda:*:123456789012:function:orders*"
//!     }
//! }"#).unwrap();
//! let alice = Principal::user("123456789012", "alice");
//! let context = Context::new();
//! let req = Request {
//!     principal: &alice,
//!     action: "lambda:InvokeFunction",
//!     resource: "arn:aws:lambda:us-east-1:123456789012:function:orders:live",
//!     context: &context,
//! };
//! assert_eq!(evaluate_identity([&policy], &req), Decision::Allow);
//! ```

pub mod condition;
pub mod context;
pub mod document;
pub mod evaluate;
pub mod matching;
pub mod principal;
mod variables;

pub use condition::Condition;
pub use context::Context;
pub use document::{Effect, PolicyDocument, PolicyError, PolicyKind, Statement, Version};
pub use evaluate::{
    authorize, evaluate_identity, evaluate_resource, trust_allows, Decision, Request,
};
pub use matching::{Case, Pattern};
pub use principal::{Principal, PrincipalKind};

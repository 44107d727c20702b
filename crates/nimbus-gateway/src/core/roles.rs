//! Execution roles: the role a function names must exist in its account and trust Lambda
//! (checked when the function is configured), and every environment gets temporary
//! credentials for it, scoped by the role's policies.

use std::time::Duration;

use nimbus_iam::{Context, PolicyDocument, Principal, PrincipalKind};
use nimbus_types::iam::{self, IamRole};
use nimbus_types::{keys, Command, Entity, FunctionKey};

use super::async_events::now_ms;
use super::error::ApiError;
use super::sessions::{self, SessionClaims, SessionCredentials};
use super::Gateway;

/// The trust policy of roles `nimbus dev` creates on first use.
const LAMBDA_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
/// Their access: everything, as a developer's own account would allow.
const FULL_ACCESS: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

fn cannot_assume() -> ApiError {
    ApiError::invalid("The role defined for the function cannot be assumed by Lambda.")
}

impl Gateway {
    /// Checks `role_arn` as a function's execution role in `account_id`: an IAM role of
    /// that account that trusts `lambda.amazonaws.com`. `nimbus dev` creates a missing
    /// one (with full access) instead.
    pub async fn check_execution_role(
        &self,
        account_id: &str,
        role_arn: &str,
    ) -> Result<(), ApiError> {
        let Some((role_account, path, name)) = iam::parse_role_arn(role_arn) else {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{role_arn}' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
            )));
        };
        if self.create_missing_roles && role_account != account_id {
            // Development: a role ARN of another account (a sample's placeholder) stands
            // for a role of the caller's own.
            return Box::pin(
                self.check_execution_role(account_id, &iam::role_arn(account_id, path, name)),
            )
            .await;
        }
        if role_account != account_id {
            return Err(cannot_assume());
        }
        let role = match self.catalog().get(&keys::iam_role(account_id, name)) {
            Some(Entity::IamRole(r)) => r,
            _ if self.create_missing_roles => {
                return self.create_dev_role(account_id, path, name).await
            }
            _ => return Err(cannot_assume()),
        };
        if role.arn() != role_arn || !trusts_lambda(&role) {
            return Err(cannot_assume());
        }
        Ok(())
    }

    async fn create_dev_role(
        &self,
        account_id: &str,
        path: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let role = IamRole {
            account_id: account_id.into(),
            name: name.into(),
            role_id: sessions::random_id("AROA", 17),
            path: path.into(),
            description: "Created by nimbus dev on first use".into(),
            trust_policy: LAMBDA_TRUST.into(),
            max_session_secs: 3600,
            created_ms: now_ms(),
            inline_policies: [(
                "nimbus-dev-full-access".to_string(),
                FULL_ACCESS.to_string(),
            )]
            .into_iter()
            .collect(),
            attached: vec![],
        };
        tracing::info!(
            account_id,
            role = name,
            "creating a missing execution role with full access (nimbus dev)"
        );
        match self.write(Command::CreateIamRole { role }).await {
            // Created meanwhile by a concurrent call: as good.
            Ok(_) => Ok(()),
            Err(e) if e.status == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Temporary credentials for the execution role of `function`, for its environments.
    /// One session per function and role, minted again once half its life has passed, so
    /// what an environment receives stays valid for at least half the lifetime.
    pub async fn role_credentials(
        &self,
        function: &FunctionKey,
        role_arn: &str,
    ) -> Result<Option<SessionCredentials>, ApiError> {
        let Some((role_account, _, name)) = iam::parse_role_arn(role_arn) else {
            return Ok(None);
        };
        // In development a placeholder account stands for the function's own.
        let account = if self.create_missing_roles {
            function.account_id.as_str()
        } else {
            role_account
        };
        let ttl = self.role_credentials_ttl;
        let now = now_ms();
        let cache_key = (
            account.to_string(),
            name.to_lowercase(),
            function.name.clone(),
        );
        {
            let cache = self
                .role_sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = cache.get(&cache_key) {
                if c.expires_ms > now + (ttl.as_millis() as u64) / 2 {
                    return Ok(Some(c.clone()));
                }
            }
        }
        let role_arn = match self.catalog().get(&keys::iam_role(account, name)) {
            Some(Entity::IamRole(r)) => r.arn(),
            _ => iam::role_arn(account, "/", name),
        };
        let key = self.session_key().await?;
        let creds = sessions::mint(
            key,
            SessionClaims {
                access_key_id: String::new(),
                account_id: account.into(),
                role_name: name.into(),
                role_arn,
                session_name: function.name.clone(),
                expires_ms: now + ttl.as_millis() as u64,
            },
        );
        self.role_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cache_key, creds.clone());
        Ok(Some(creds))
    }

    /// The longest a session may be asked for (`DurationSeconds`), for `AssumeRole`.
    pub fn role_credentials_ttl(&self) -> Duration {
        self.role_credentials_ttl
    }
}

/// Whether the role's trust policy lets Lambda assume it.
pub fn trusts_lambda(role: &IamRole) -> bool {
    let Ok(doc) = PolicyDocument::parse(&role.trust_policy) else {
        return false;
    };
    let lambda = Principal {
        arn: iam::LAMBDA_SERVICE.into(),
        account: String::new(),
        kind: PrincipalKind::Service,
    };
    nimbus_iam::trust_allows(&doc, &lambda, "sts:AssumeRole", &Context::new())
}

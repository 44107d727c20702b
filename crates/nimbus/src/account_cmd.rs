//! `nimbus account …`: accounts and access keys, written to the metadata cluster.

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_tls::Transport;
use nimbus_types::{AccessKey, Command};

use crate::cli::AccountCommand;

pub async fn run(cmd: AccountCommand, transport: Transport) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Create {
            meta,
            account_id,
            access_key_id,
            secret_access_key,
            region,
        } => {
            let meta = MetaClient::from_list(&meta, &transport).context("--meta")?;
            create(
                &meta,
                &account_id,
                &access_key_id,
                &secret_access_key,
                &region,
            )
            .await?;
            // Never echo the secret.
            println!("account {account_id} ready in {region} with access key {access_key_id}");
            Ok(())
        }
        AccountCommand::SetLimits {
            meta,
            account_id,
            region,
            concurrent_executions,
            unreserved_minimum,
        } => {
            let meta = MetaClient::from_list(&meta, &transport).context("--meta")?;
            meta.write(Command::PutRegion {
                name: region.clone(),
            })
            .await
            .context("creating the region")?;
            meta.write(Command::SetAccountLimits {
                account_id: account_id.clone(),
                region: region.clone(),
                limits: nimbus_types::RegionLimits {
                    concurrent_executions,
                    unreserved_minimum,
                },
            })
            .await
            .with_context(|| format!("setting the limits of {account_id} in {region}"))?;
            println!(
                "account {account_id} in {region}: {concurrent_executions} concurrent executions, {unreserved_minimum} unreserved minimum"
            );
            Ok(())
        }
        AccountCommand::SetEdgeBudget {
            meta,
            account_id,
            region,
            location,
            concurrency,
            gateways,
        } => {
            let meta = MetaClient::from_list(&meta, &transport).context("--meta")?;
            meta.write(Command::PutEdgeBudget {
                budget: nimbus_types::EdgeBudget {
                    account_id: account_id.clone(),
                    region: region.clone(),
                    location: location.clone(),
                    slots: concurrency,
                    gateways: gateways.clone(),
                },
            })
            .await
            .with_context(|| format!("setting the budget of {account_id} at {location}"))?;
            if concurrency == 0 {
                println!("account {account_id}: no budget at {location} ({region})");
            } else {
                println!(
                    "account {account_id}: {concurrency} concurrent executions set aside at {location} ({region}), held by {}",
                    gateways.join(", ")
                );
            }
            Ok(())
        }
        AccountCommand::DeleteKey {
            meta,
            access_key_id,
        } => {
            let meta = MetaClient::from_list(&meta, &transport).context("--meta")?;
            meta.write(Command::DeleteAccessKey {
                access_key_id: access_key_id.clone(),
            })
            .await
            .with_context(|| format!("deleting access key {access_key_id}"))?;
            println!("access key {access_key_id} deleted");
            Ok(())
        }
    }
}

/// Creates the account, the region and the access key; each write is idempotent.
pub async fn create(
    meta: &MetaClient,
    account_id: &str,
    access_key_id: &str,
    secret: &str,
    region: &str,
) -> anyhow::Result<()> {
    meta.write(Command::PutAccount {
        account_id: account_id.into(),
    })
    .await
    .context("creating the account")?;
    meta.write(Command::PutRegion {
        name: region.into(),
    })
    .await
    .context("creating the region")?;
    let key = AccessKey {
        access_key_id: access_key_id.into(),
        account_id: account_id.into(),
        // The metadata service seals it with the cluster key before it is stored.
        secret_ciphertext: secret.as_bytes().to_vec(),
        user_name: None,
        active: true,
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    meta.write(Command::PutAccessKey { key })
        .await
        .context("creating the access key")?;
    Ok(())
}

//! What each command does to the state. Deterministic: the same entries applied in the
//! same order give the same state on every replica (no clocks, no randomness; revision
//! ids derive from the log index).

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{
    keys, Alias, CodePackage, Entity, EventInvokeConfig, Function, FunctionKey, FunctionState,
    LastUpdateStatus, MetaError, RegionLimits, Version,
};
use sha2::Digest;

use super::cf;
use super::tx::EntryTx;

/// A revision id (Lambda's `RevisionId`, a UUID) derived from the log index and the key.
pub(crate) fn revision_id(index: u64, key: &str) -> String {
    let digest = sha2::Sha256::digest([&index.to_be_bytes()[..], key.as_bytes()].concat());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // Mark it as an RFC 4122 variant, version 4 layout, so clients that parse it accept it.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Key of one sealed code chunk in the `code` column family.
pub fn chunk_key(sha256: &str, index: u32) -> Vec<u8> {
    format!("{}/{index:05}", keys::code(sha256)).into_bytes()
}

fn get_function(tx: &EntryTx<'_>, key: &FunctionKey) -> Result<Function, MetaError> {
    match tx.get(&keys::function(key))? {
        Some(Entity::Function(f)) => Ok(f),
        _ => Err(MetaError::not_found(format!(
            "Function not found: {}",
            key.arn()
        ))),
    }
}

fn get_version(tx: &EntryTx<'_>, key: &FunctionKey, n: u64) -> Result<Version, MetaError> {
    match tx.get(&keys::version(key, n))? {
        Some(Entity::Version(v)) => Ok(v),
        _ => Err(MetaError::not_found(format!(
            "Function not found: {}:{n}",
            key.arn()
        ))),
    }
}

fn get_alias(tx: &EntryTx<'_>, key: &FunctionKey, name: &str) -> Result<Alias, MetaError> {
    match tx.get(&keys::alias(key, name))? {
        Some(Entity::Alias(a)) => Ok(a),
        _ => Err(MetaError::not_found(format!(
            "Alias not found: {}:{name}",
            key.arn()
        ))),
    }
}

fn check_revision(current: &str, expected: &Option<String>) -> Result<(), MetaError> {
    match expected {
        Some(e) if e != current => Err(MetaError::new(
            nimbus_types::ErrorKind::PreconditionFailed,
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

fn require_code(tx: &EntryTx<'_>, sha256: &str) -> Result<CodePackage, MetaError> {
    match tx.get(&keys::code(sha256))? {
        Some(Entity::CodePackage(p)) => Ok(p),
        _ => Err(MetaError::invalid(format!(
            "Code package {sha256} was not uploaded completely"
        ))),
    }
}

/// A version qualifier (`$LATEST` or a number) that must exist.
fn require_version_qualifier(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    v: &str,
) -> Result<(), MetaError> {
    if v == "$LATEST" {
        return Ok(());
    }
    let n: u64 = v
        .parse()
        .map_err(|_| MetaError::invalid(format!("Invalid function version {v}")))?;
    get_version(tx, key, n).map(|_| ())
}

/// `$LATEST`, an existing version number or an existing alias.
fn require_qualifier(tx: &EntryTx<'_>, key: &FunctionKey, q: &str) -> Result<(), MetaError> {
    if q == "$LATEST" || q.chars().all(|c| c.is_ascii_digit()) {
        require_version_qualifier(tx, key, q)
    } else {
        get_alias(tx, key, q).map(|_| ())
    }
}

fn account_limits(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
) -> Result<RegionLimits, MetaError> {
    match tx.get(&keys::account(account_id))? {
        Some(Entity::Account(a)) => Ok(a.limits.get(region).copied().unwrap_or_default()),
        _ => Err(MetaError::not_found(format!(
            "Account {account_id} not found"
        ))),
    }
}

/// Sum of reserved concurrency of the account's functions in a region, except `skip`.
/// Provisioned concurrency of the account's functions without a reservation (it comes
/// out of the unreserved pool), except function `skip`.
fn unreserved_provisioned_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: &str,
) -> Result<u64, MetaError> {
    let mut total = 0u64;
    for (_, e) in tx.scan(&keys::functions_of(account_id, region))? {
        if let Entity::Function(f) = e {
            if f.key.name != skip && f.reserved_concurrency.is_none() {
                total += f
                    .provisioned_concurrency
                    .values()
                    .map(|n| u64::from(*n))
                    .sum::<u64>();
            }
        }
    }
    Ok(total)
}

fn reserved_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: Option<&str>,
) -> Result<u64, MetaError> {
    let mut total = 0u64;
    for (_, e) in tx.scan(&keys::functions_of(account_id, region))? {
        if let Entity::Function(f) = e {
            if Some(f.key.name.as_str()) != skip {
                total += u64::from(f.reserved_concurrency.unwrap_or(0));
            }
        }
    }
    Ok(total)
}

fn publish(
    tx: &mut EntryTx<'_>,
    index: u64,
    f: &mut Function,
    description: String,
    now_ms: u64,
) -> Result<Version, MetaError> {
    // Publishing without a change since the last version returns that version.
    if f.next_version > 1 {
        let last = get_version(tx, &f.key, f.next_version - 1)?;
        if last.code == f.code && last.config == f.config {
            return Ok(last);
        }
    }
    let number = f.next_version;
    let key = keys::version(&f.key, number);
    let v = Version {
        key: f.key.clone(),
        number,
        config: f.config.clone(),
        code: f.code.clone(),
        description,
        revision_id: revision_id(index, &key),
        last_modified_ms: now_ms,
    };
    tx.put(key, Entity::Version(v.clone()));
    f.next_version += 1;
    f.revision_id = revision_id(index, &keys::function(&f.key));
    Ok(v)
}

fn save(tx: &mut EntryTx<'_>, f: &Function) {
    tx.put(keys::function(&f.key), Entity::Function(f.clone()));
}

fn touch(f: &mut Function, index: u64, now_ms: Option<u64>) {
    f.revision_id = revision_id(index, &keys::function(&f.key));
    if let Some(now) = now_ms {
        f.last_modified_ms = now;
    }
}

/// Applies one command at log `index`.
pub(crate) fn apply(
    tx: &mut EntryTx<'_>,
    index: u64,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    use CommandOutput::Done;
    match cmd {
        Command::PutAccount { account_id } => {
            let key = keys::account(account_id);
            if !tx.exists(&key)? {
                let acct = nimbus_types::Account {
                    id: account_id.clone(),
                    limits: Default::default(),
                };
                tx.put(key, Entity::Account(acct));
            }
            Ok(Done)
        }
        Command::SetAccountLimits {
            account_id,
            region,
            limits,
        } => {
            let key = keys::account(account_id);
            let Some(Entity::Account(mut acct)) = tx.get(&key)? else {
                return Err(MetaError::not_found(format!(
                    "Account {account_id} not found"
                )));
            };
            let reserved = reserved_total(tx, account_id, region, None)?;
            if u64::from(limits.concurrent_executions)
                < reserved + u64::from(limits.unreserved_minimum)
            {
                return Err(MetaError::invalid(format!(
                    "concurrent execution limit {} leaves less than the unreserved minimum {} after {reserved} reserved",
                    limits.concurrent_executions, limits.unreserved_minimum
                )));
            }
            acct.limits.insert(region.clone(), *limits);
            tx.put(key, Entity::Account(acct));
            Ok(Done)
        }
        Command::PutAccessKey { key } => {
            if !tx.exists(&keys::account(&key.account_id))? {
                return Err(MetaError::not_found(format!(
                    "Account {} not found",
                    key.account_id
                )));
            }
            tx.put(
                keys::access_key(&key.access_key_id),
                Entity::AccessKey(key.clone()),
            );
            Ok(Done)
        }
        Command::DeleteAccessKey { access_key_id } => {
            let key = keys::access_key(access_key_id);
            if !tx.exists(&key)? {
                return Err(MetaError::not_found(format!(
                    "Access key {access_key_id} not found"
                )));
            }
            tx.delete(key);
            Ok(Done)
        }
        Command::PutRegion { name } => {
            let key = keys::region(name);
            if !tx.exists(&key)? {
                tx.put(
                    key,
                    Entity::Region(nimbus_types::Region {
                        name: name.clone(),
                        edge_locations: vec![],
                    }),
                );
            }
            Ok(Done)
        }
        Command::PutEdgeLocation { region, location } => {
            let key = keys::region(region);
            let Some(Entity::Region(mut r)) = tx.get(&key)? else {
                return Err(MetaError::not_found(format!("Region {region} not found")));
            };
            if !r.edge_locations.contains(location) {
                r.edge_locations.push(location.clone());
                r.edge_locations.sort();
                tx.put(key, Entity::Region(r));
            }
            Ok(Done)
        }
        Command::PutCodeChunk {
            sha256,
            index: chunk,
            ciphertext,
        } => {
            if ciphertext.len() > nimbus_types::limits::CODE_CHUNK_BYTES + 64 {
                return Err(MetaError::new(
                    nimbus_types::ErrorKind::RequestTooLarge,
                    "code chunk exceeds 1 MiB",
                ));
            }
            tx.put_raw(cf::CODE, chunk_key(sha256, *chunk), ciphertext.clone());
            Ok(Done)
        }
        Command::CommitCode { package } => {
            if package.chunks as usize != package.chunk_sha256.len() {
                return Err(MetaError::invalid(
                    "chunk count does not match the chunk hashes",
                ));
            }
            for i in 0..package.chunks {
                if tx
                    .get_raw(cf::CODE, &chunk_key(&package.sha256, i))?
                    .is_none()
                {
                    return Err(MetaError::invalid(format!(
                        "code chunk {i} of {} is missing",
                        package.sha256
                    )));
                }
            }
            tx.put(
                keys::code(&package.sha256),
                Entity::CodePackage(package.clone()),
            );
            Ok(Done)
        }
        Command::CreateFunction {
            key,
            config,
            code,
            tags,
            publish: do_publish,
            now_ms,
        } => {
            if !tx.exists(&keys::account(&key.account_id))? {
                return Err(MetaError::not_found(format!(
                    "Account {} not found",
                    key.account_id
                )));
            }
            if tx.exists(&keys::function(key))? {
                return Err(MetaError::conflict(format!(
                    "Function already exist: {}",
                    key.name
                )));
            }
            require_code(tx, &code.sha256)?;
            let mut f = Function {
                key: key.clone(),
                config: config.clone(),
                code: code.clone(),
                tags: tags.clone(),
                state: FunctionState::Active,
                last_update_status: LastUpdateStatus::Successful,
                revision_id: String::new(),
                last_modified_ms: *now_ms,
                reserved_concurrency: None,
                event_invoke_configs: Default::default(),
                provisioned_concurrency: Default::default(),
                url_config: None,
                next_version: 1,
            };
            touch(&mut f, index, None);
            if *do_publish {
                let v = publish(tx, index, &mut f, String::new(), *now_ms)?;
                save(tx, &f);
                return Ok(CommandOutput::FunctionAndVersion(Box::new(f), Box::new(v)));
            }
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        Command::UpdateFunctionCode {
            key,
            code,
            expected_revision,
            publish: do_publish,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            require_code(tx, &code.sha256)?;
            f.code = code.clone();
            touch(&mut f, index, Some(*now_ms));
            if *do_publish {
                let v = publish(tx, index, &mut f, String::new(), *now_ms)?;
                save(tx, &f);
                return Ok(CommandOutput::FunctionAndVersion(Box::new(f), Box::new(v)));
            }
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        Command::UpdateFunctionConfiguration {
            key,
            config,
            expected_revision,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            f.config = config.clone();
            touch(&mut f, index, Some(*now_ms));
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        Command::DeleteFunction { key, version: None } => {
            get_function(tx, key)?;
            for prefix in [keys::versions_of(key), keys::aliases_of(key)] {
                for (k, _) in tx.scan(&prefix)? {
                    tx.delete(k);
                }
            }
            tx.delete(keys::function(key));
            Ok(Done)
        }
        Command::DeleteFunction {
            key,
            version: Some(n),
        } => {
            get_version(tx, key, *n)?;
            for (_, e) in tx.scan(&keys::aliases_of(key))? {
                if let Entity::Alias(a) = e {
                    let routed = a.routing.as_ref().map(|r| r.version) == Some(*n);
                    if a.function_version == n.to_string() || routed {
                        return Err(MetaError::conflict(format!(
                            "Unable to delete version because the following aliases reference it: [{}]",
                            a.name
                        )));
                    }
                }
            }
            tx.delete(keys::version(key, *n));
            // Its provisioned concurrency goes with it.
            let mut f = get_function(tx, key)?;
            if f.provisioned_concurrency.remove(&n.to_string()).is_some() {
                save(tx, &f);
            }
            Ok(Done)
        }
        Command::PublishVersion {
            key,
            description,
            expected_code_sha256,
            expected_revision,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            if let Some(sha) = expected_code_sha256 {
                if *sha != f.code.sha256 {
                    return Err(MetaError::invalid(format!(
                        "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                        f.code.sha256
                    )));
                }
            }
            let before = f.next_version;
            let v = publish(tx, index, &mut f, description.clone(), *now_ms)?;
            if f.next_version != before {
                save(tx, &f);
            }
            Ok(CommandOutput::Version(Box::new(v)))
        }
        Command::CreateAlias {
            key,
            name,
            function_version,
            description,
            routing,
        } => {
            get_function(tx, key)?;
            let akey = keys::alias(key, name);
            if tx.exists(&akey)? {
                return Err(MetaError::conflict(format!(
                    "Alias already exists: {}:{name}",
                    key.arn()
                )));
            }
            require_version_qualifier(tx, key, function_version)?;
            check_routing(tx, key, function_version, routing.as_ref())?;
            let alias = Alias {
                key: key.clone(),
                name: name.clone(),
                function_version: function_version.clone(),
                description: description.clone(),
                routing: routing.clone(),
                revision_id: revision_id(index, &akey),
            };
            tx.put(akey, Entity::Alias(alias.clone()));
            Ok(CommandOutput::Alias(alias))
        }
        Command::UpdateAlias {
            key,
            name,
            function_version,
            description,
            routing,
            expected_revision,
        } => {
            let mut alias = get_alias(tx, key, name)?;
            check_revision(&alias.revision_id, expected_revision)?;
            if let Some(v) = function_version {
                require_version_qualifier(tx, key, v)?;
                alias.function_version = v.clone();
            }
            if let Some(d) = description {
                alias.description = d.clone();
            }
            if let Some(r) = routing {
                alias.routing = r.clone();
            }
            check_routing(tx, key, &alias.function_version, alias.routing.as_ref())?;
            let akey = keys::alias(key, name);
            alias.revision_id = revision_id(index, &akey);
            tx.put(akey, Entity::Alias(alias.clone()));
            Ok(CommandOutput::Alias(alias))
        }
        Command::DeleteAlias { key, name } => {
            get_alias(tx, key, name)?;
            tx.delete(keys::alias(key, name));
            let mut f = get_function(tx, key)?;
            if f.provisioned_concurrency.remove(name).is_some() {
                save(tx, &f);
            }
            Ok(Done)
        }
        Command::PutFunctionConcurrency { key, reserved } => {
            let mut f = get_function(tx, key)?;
            let limits = account_limits(tx, &key.account_id, &key.region)?;
            let others = reserved_total(tx, &key.account_id, &key.region, Some(&key.name))?;
            // The function's provisioned concurrency must fit in its reservation.
            let provisioned: u64 = f
                .provisioned_concurrency
                .values()
                .map(|n| u64::from(*n))
                .sum();
            if provisioned > u64::from(*reserved) {
                return Err(MetaError::invalid(format!(
                    "Specified ReservedConcurrentExecutions for function ({reserved}) is less than its provisioned concurrency ({provisioned})."
                )));
            }
            // Other functions' provisioned concurrency without a reservation comes out of
            // the unreserved pool too.
            let unreserved_provisioned =
                unreserved_provisioned_total(tx, &key.account_id, &key.region, &key.name)?;
            if u64::from(limits.concurrent_executions)
                < others
                    + unreserved_provisioned
                    + u64::from(*reserved)
                    + u64::from(limits.unreserved_minimum)
            {
                return Err(MetaError::invalid(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                    limits.unreserved_minimum
                )));
            }
            f.reserved_concurrency = Some(*reserved);
            save(tx, &f);
            Ok(Done)
        }
        Command::DeleteFunctionConcurrency { key } => {
            let mut f = get_function(tx, key)?;
            f.reserved_concurrency = None;
            save(tx, &f);
            Ok(Done)
        }
        Command::PutProvisionedConcurrency {
            key,
            qualifier,
            requested,
        } => {
            let mut f = get_function(tx, key)?;
            if qualifier == "$LATEST" {
                return Err(MetaError::invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions."));
            }
            require_qualifier(tx, key, qualifier)?;
            if *requested == 0 {
                return Err(MetaError::invalid(format!("1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1")));
            }
            let others: u64 = f
                .provisioned_concurrency
                .iter()
                .filter(|(q, _)| *q != qualifier)
                .map(|(_, n)| u64::from(*n))
                .sum();
            let wanted = others + u64::from(*requested);
            match f.reserved_concurrency {
                // Within the function's reservation.
                Some(reserved) if wanted > u64::from(reserved) => {
                    return Err(MetaError::invalid(format!("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function ({reserved}).")));
                }
                Some(_) => {}
                // Out of the account's unreserved pool, which keeps its minimum.
                None => {
                    let limits = account_limits(tx, &key.account_id, &key.region)?;
                    let reserved = reserved_total(tx, &key.account_id, &key.region, None)?;
                    let provisioned =
                        unreserved_provisioned_total(tx, &key.account_id, &key.region, &key.name)?;
                    if u64::from(limits.concurrent_executions)
                        < reserved + provisioned + wanted + u64::from(limits.unreserved_minimum)
                    {
                        return Err(MetaError::invalid(format!(
                            "Requested Provisioned Concurrency decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                            limits.unreserved_minimum
                        )));
                    }
                }
            }
            f.provisioned_concurrency
                .insert(qualifier.clone(), *requested);
            save(tx, &f);
            Ok(Done)
        }
        Command::DeleteProvisionedConcurrency { key, qualifier } => {
            let mut f = get_function(tx, key)?;
            if f.provisioned_concurrency.remove(qualifier).is_none() {
                return Err(MetaError::not_found(format!(
                    "No Provisioned Concurrency Config found for this function: {}:{qualifier}",
                    key.arn()
                )));
            }
            save(tx, &f);
            Ok(Done)
        }
        Command::PutEventInvokeConfig {
            key,
            qualifier,
            config,
        } => {
            let mut f = get_function(tx, key)?;
            require_qualifier(tx, key, qualifier)?;
            let cfg = EventInvokeConfig { ..config.clone() };
            f.event_invoke_configs.insert(qualifier.clone(), cfg);
            save(tx, &f);
            Ok(Done)
        }
        Command::DeleteEventInvokeConfig { key, qualifier } => {
            let mut f = get_function(tx, key)?;
            if f.event_invoke_configs.remove(qualifier).is_none() {
                return Err(MetaError::not_found(format!(
                    "The function {}:{qualifier} doesn't have an EventInvokeConfig",
                    key.arn()
                )));
            }
            save(tx, &f);
            Ok(Done)
        }
        Command::PutFunctionUrlConfig { key, config } => {
            let mut f = get_function(tx, key)?;
            f.url_config = Some(config.clone());
            save(tx, &f);
            Ok(Done)
        }
        Command::DeleteFunctionUrlConfig { key } => {
            let mut f = get_function(tx, key)?;
            if f.url_config.take().is_none() {
                return Err(MetaError::not_found(format!(
                    "The resource you requested does not exist: {} has no function URL",
                    key.arn()
                )));
            }
            save(tx, &f);
            Ok(Done)
        }
        Command::TagResource { key, tags } => {
            let mut f = get_function(tx, key)?;
            f.tags.extend(tags.clone());
            nimbus_types::validate::tags(&f.tags)?;
            save(tx, &f);
            Ok(Done)
        }
        Command::UntagResource { key, tag_keys } => {
            let mut f = get_function(tx, key)?;
            for k in tag_keys {
                f.tags.remove(k);
            }
            save(tx, &f);
            Ok(Done)
        }
        Command::RegisterWorker { worker } => {
            tx.put(keys::worker(&worker.id), Entity::Worker(worker.clone()));
            Ok(Done)
        }
        Command::DeregisterWorker { id } => {
            let key = keys::worker(id);
            if tx.exists(&key)? {
                tx.delete(key);
            }
            Ok(Done)
        }
        Command::RetireNode { id } => {
            tx.put(keys::retired_node(*id), Entity::RetiredNode(*id));
            Ok(Done)
        }
        Command::EnqueueEvent { .. }
        | Command::ClaimEvent { .. }
        | Command::RetryEvent { .. }
        | Command::CompleteEvent { .. } => super::events::apply(tx, cmd),
    }
}

fn check_routing(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    function_version: &str,
    routing: Option<&nimbus_types::AliasRouting>,
) -> Result<(), MetaError> {
    let Some(r) = routing else { return Ok(()) };
    nimbus_types::validate::alias_routing(r)?;
    if function_version == "$LATEST" {
        return Err(MetaError::invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ));
    }
    if function_version == r.version.to_string() {
        return Err(MetaError::invalid("Routing to the alias's own version is not allowed; choose a different additional version"));
    }
    get_version(tx, key, r.version).map(|_| ())
}

//! Lambda's JSON shapes: what the API returns, built from Nimbus's records.

use nimbus_types::{Alias, CodeRef, Function, FunctionConfig, FunctionKey, Qualifier, Version};
use serde_json::{json, Value};

/// Lambda's timestamp format: `2019-09-24T18:20:00.000+0000`.
pub fn timestamp(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    t.format(&fmt).unwrap_or_default()
}

fn config_json(
    key: &FunctionKey,
    version: &str,
    c: &FunctionConfig,
    code: &CodeRef,
    revision: &str,
    modified_ms: u64,
    description: &str,
) -> Value {
    let arn = if version == Qualifier::LATEST {
        key.arn()
    } else {
        format!("{}:{version}", key.arn())
    };
    let mut v = json!({
        "FunctionName": key.name,
        "FunctionArn": arn,
        "Runtime": c.runtime,
        "Role": c.role,
        "Handler": c.handler,
        "CodeSize": code.size,
        "Description": description,
        "Timeout": c.timeout_s,
        "MemorySize": c.memory_mb,
        "LastModified": timestamp(modified_ms),
        "CodeSha256": code.sha256,
        "Version": version,
        "TracingConfig": { "Mode": "PassThrough" },
        "RevisionId": revision,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": { "Size": c.ephemeral_storage_mb },
        "LoggingConfig": { "LogFormat": c.log_format, "LogGroup": format!("/aws/lambda/{}", key.name) },
        "Layers": c.layers.iter().map(|l| json!({ "Arn": l.arn, "CodeSize": l.code.size })).collect::<Vec<_>>(),
    });
    // JSON logs have levels (INFO unless set).
    if c.log_format == "JSON" {
        let or_info = |l: &str| {
            if l.is_empty() {
                "INFO".to_string()
            } else {
                l.to_string()
            }
        };
        v["LoggingConfig"]["ApplicationLogLevel"] = or_info(&c.application_log_level).into();
        v["LoggingConfig"]["SystemLogLevel"] = or_info(&c.system_log_level).into();
    }
    if !c.environment.is_empty() {
        v["Environment"] = json!({ "Variables": c.environment });
    }
    v
}

/// `FunctionConfiguration` of `$LATEST`.
pub fn function_configuration(f: &Function) -> Value {
    let mut v = config_json(
        &f.key,
        Qualifier::LATEST,
        &f.config,
        &f.code,
        &f.revision_id,
        f.last_modified_ms,
        &f.config.description,
    );
    v["State"] = json!(format!("{:?}", f.state));
    v["LastUpdateStatus"] = json!(format!("{:?}", f.last_update_status));
    v
}

/// `FunctionConfiguration` of a published version.
pub fn version_configuration(v: &Version) -> Value {
    let desc = if v.description.is_empty() {
        &v.config.description
    } else {
        &v.description
    };
    config_json(
        &v.key,
        &v.number.to_string(),
        &v.config,
        &v.code,
        &v.revision_id,
        v.last_modified_ms,
        desc,
    )
}

/// `AliasConfiguration`.
pub fn alias_configuration(a: &Alias) -> Value {
    let mut v = json!({
        "AliasArn": format!("{}:{}", a.key.arn(), a.name),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if let Some(r) = &a.routing {
        v["RoutingConfig"] =
            json!({ "AdditionalVersionWeights": { r.version.to_string(): r.weight } });
    }
    v
}

//! Validation of user input, with Lambda's limits and error names. Runs before a command
//! is proposed, so the Raft log only ever holds well-formed commands.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::OnceLock;

use regex::Regex;

use crate::error::MetaError;
use crate::limits::*;
use crate::model::{AliasRouting, EventInvokeConfig, FunctionConfig};

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    // The patterns are literals in this file; a typo fails every test, not a user.
    cell.get_or_init(|| Regex::new(pattern).expect("valid literal regex"))
}

/// The runtimes Nimbus can run, each exactly the language version it names: the
/// versions Debian carries (Python 3.11 in bookworm, 3.13 in trixie; Node.js 18 in
/// bookworm, 20 in trixie). Others (python3.12, nodejs22.x, ...) are refused rather than
/// run on another version; a worker also refuses an identifier whose interpreter it does
/// not have in exactly that version.
pub const RUNTIMES: &[&str] = &[
    "provided.al2023",
    "provided.al2",
    "provided",
    "python3.11",
    "python3.13",
    "nodejs18.x",
    "nodejs20.x",
    "java17",
    "java21",
    "ruby3.3",
];

pub fn account_id(id: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^\d{12}$").is_match(id) {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "account id '{id}' must be 12 digits"
        )))
    }
}

pub fn region(name: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^[a-z]{2}(-gov)?-[a-z]+-\d{1,2}$").is_match(name) {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "'{name}' is not a region name like us-east-1"
        )))
    }
}

/// A location name (zone or edge location): short and path-safe.
pub fn location(name: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$").is_match(name) {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "'{name}' is not a valid location name"
        )))
    }
}

pub fn function_name(name: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^[a-zA-Z0-9_-]{1,64}$").is_match(name) {
        Ok(())
    } else {
        Err(MetaError::validation(format!(
            "1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+ and have length 1 to {FUNCTION_NAME_MAX}"
        )))
    }
}

/// The part of a function's log group after `/aws/lambda/`: the function's name, or, for
/// what ran at an edge location, `<home region>.<name>` as Lambda@Edge names its groups.
/// Never a path (no `/`, and no `.` but the one after a region).
pub fn log_group_function(group_function: &str) -> bool {
    match group_function.split_once('.') {
        Some((region_name, name)) => region(region_name).is_ok() && function_name(name).is_ok(),
        None => function_name(group_function).is_ok(),
    }
}

/// The log group part (see [`log_group_function`]) of function `name` run in `region`,
/// at an edge location if `edge` is set.
pub fn log_group_function_of(name: &str, region: &str, edge: bool) -> String {
    if edge {
        format!("{region}.{name}")
    } else {
        name.to_string()
    }
}

pub fn alias_name(name: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    // An alias may not look like a version number, which would make qualifiers ambiguous.
    if re(&R, r"^[a-zA-Z0-9_-]{1,128}$").is_match(name) && !name.chars().all(|c| c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(MetaError::validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )))
    }
}

pub fn access_key_id(id: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^[A-Za-z0-9]{4,128}$").is_match(id) {
        Ok(())
    } else {
        Err(MetaError::invalid(
            "access key id must be 4 to 128 letters or digits",
        ))
    }
}

pub fn role(arn: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(
        &R,
        r"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$",
    )
    .is_match(arn)
    {
        Ok(())
    } else {
        Err(MetaError::validation(format!(
            "1 validation error detected: Value '{arn}' at 'role' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
        )))
    }
}

pub fn runtime(name: &str) -> Result<(), MetaError> {
    if RUNTIMES.contains(&name) {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "Value {name} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            RUNTIMES.join(", ")
        )))
    }
}

pub fn handler(h: &str) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    if re(&R, r"^[^\s]{1,128}$").is_match(h) {
        Ok(())
    } else {
        Err(MetaError::validation(format!(
            "1 validation error detected: Value '{h}' at 'handler' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [^\\s]+ and have length at most 128"
        )))
    }
}

fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), MetaError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(MetaError::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: \
             Member must have value between {min} and {max}"
        )))
    }
}

pub fn environment(vars: &BTreeMap<String, String>) -> Result<(), MetaError> {
    static R: OnceLock<Regex> = OnceLock::new();
    let mut size = 0;
    for (k, v) in vars {
        if !re(&R, r"^[a-zA-Z]([a-zA-Z0-9_])+$").is_match(k) {
            return Err(MetaError::validation(format!(
                "environment variable name '{k}' must match [a-zA-Z]([a-zA-Z0-9_])+"
            )));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(MetaError::invalid(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {k}"
            )));
        }
        size += k.len() + v.len();
    }
    if size > ENVIRONMENT_MAX_BYTES {
        return Err(MetaError::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {size} bytes"
        )));
    }
    Ok(())
}

/// Environment variables Lambda reserves for itself.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub fn tags(tags: &BTreeMap<String, String>) -> Result<(), MetaError> {
    if tags.len() > TAGS_MAX {
        return Err(MetaError::invalid(format!(
            "a resource can have at most {TAGS_MAX} tags"
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || k.starts_with("aws:") {
            return Err(MetaError::invalid(format!("invalid tag key '{k}'")));
        }
        if v.chars().count() > 256 {
            return Err(MetaError::invalid(format!(
                "tag value for '{k}' exceeds 256 characters"
            )));
        }
    }
    Ok(())
}

/// Validates a whole function configuration.
pub fn function_config(c: &FunctionConfig) -> Result<(), MetaError> {
    runtime(&c.runtime)?;
    handler(&c.handler)?;
    role(&c.role)?;
    if c.description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {DESCRIPTION_MAX_CHARS}"
        )));
    }
    in_range("memorySize", c.memory_mb, MEMORY_MIN_MB, MEMORY_MAX_MB)?;
    in_range("timeout", c.timeout_s, TIMEOUT_MIN_S, TIMEOUT_MAX_S)?;
    in_range(
        "ephemeralStorage.size",
        c.ephemeral_storage_mb,
        EPHEMERAL_MIN_MB,
        EPHEMERAL_MAX_MB,
    )?;
    environment(&c.environment)?;
    if c.layers.len() > LAYERS_MAX {
        return Err(MetaError::invalid(format!(
            "a function can use at most {LAYERS_MAX} layers"
        )));
    }
    if c.log_format != "Text" && c.log_format != "JSON" {
        return Err(MetaError::validation(
            "LoggingConfig.LogFormat must be Text or JSON",
        ));
    }
    const APPLICATION: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    const SYSTEM: &[&str] = &["DEBUG", "INFO", "WARN"];
    for (field, value, allowed) in [
        ("applicationLogLevel", &c.application_log_level, APPLICATION),
        ("systemLogLevel", &c.system_log_level, SYSTEM),
    ] {
        if !value.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(MetaError::validation(format!(
                "1 validation error detected: Value '{value}' at 'loggingConfig.{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            )));
        }
    }
    if c.log_format == "Text"
        && !(c.application_log_level.is_empty() && c.system_log_level.is_empty())
    {
        return Err(MetaError::invalid(
            "LogLevel is not supported when LogFormat is set to \"Text\". Remove LogLevel from your request or change the LogFormat to \"JSON\" and try again.",
        ));
    }
    Ok(())
}

/// Every runtime identifier Lambda knows: a layer may declare itself compatible with any
/// of them (it is only metadata), while a function may only use [`RUNTIMES`].
pub const LAMBDA_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java8",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
    "provided",
    "provided.al2",
    "provided.al2023",
    "nodejs26.x",
    "python3.15",
    "java8.al2023",
    "java11.al2023",
    "java17.al2023",
];

/// The descriptive fields of `PublishLayerVersion`.
pub fn layer_version(
    description: &str,
    compatible_runtimes: &[String],
    compatible_architectures: &[String],
    license_info: &str,
) -> Result<(), MetaError> {
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {DESCRIPTION_MAX_CHARS}"
        )));
    }
    if compatible_runtimes.len() > 15
        || compatible_runtimes
            .iter()
            .any(|r| !LAMBDA_RUNTIMES.contains(&r.as_str()))
    {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value '[{}]' at 'compatibleRuntimes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]] and have length less than or equal to 15",
            compatible_runtimes.join(", "),
            LAMBDA_RUNTIMES.join(", ")
        )));
    }
    if compatible_architectures.len() > 2
        || compatible_architectures
            .iter()
            .any(|a| a != "x86_64" && a != "arm64")
    {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value '[{}]' at 'compatibleArchitectures' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]] and have length less than or equal to 2",
            compatible_architectures.join(", ")
        )));
    }
    if license_info.chars().count() > 512 {
        return Err(MetaError::validation(
            "1 validation error detected: Value at 'licenseInfo' failed to satisfy constraint: Member must have length less than or equal to 512",
        ));
    }
    Ok(())
}

/// One `AddLayerVersionPermission` statement. Returns the principal in stored form:
/// `*` or an account id (`arn:aws:iam::ACCOUNT:root` names the account).
pub fn layer_statement(
    statement_id: &str,
    action: &str,
    principal: &str,
    organization_id: Option<&str>,
) -> Result<String, MetaError> {
    static SID: OnceLock<Regex> = OnceLock::new();
    static ORG: OnceLock<Regex> = OnceLock::new();
    static ROOT: OnceLock<Regex> = OnceLock::new();
    if !re(&SID, r"^[a-zA-Z0-9\-_]{1,100}$").is_match(statement_id) {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value '{statement_id}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)"
        )));
    }
    if action != "lambda:GetLayerVersion" {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: lambda:GetLayerVersion"
        )));
    }
    let stored = if principal == "*" || account_id(principal).is_ok() {
        principal.to_string()
    } else if let Some(c) = re(&ROOT, r"^arn:aws[a-zA-Z-]*:iam::(\d{12}):root$").captures(principal)
    {
        c[1].to_string()
    } else {
        return Err(MetaError::validation(format!(
            "1 validation error detected: Value '{principal}' at 'principal' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{{12}}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{{12}}:root"
        )));
    };
    if let Some(org) = organization_id {
        if !re(&ORG, r"^o-[a-z0-9]{10,32}$").is_match(org) {
            return Err(MetaError::validation(format!(
                "1 validation error detected: Value '{org}' at 'organizationId' failed to satisfy constraint: Member must satisfy regular expression pattern: o-[a-z0-9]{{10,32}}"
            )));
        }
        if stored != "*" {
            return Err(MetaError::invalid(
                "OrganizationId can only be given with Principal '*'",
            ));
        }
    }
    Ok(stored)
}

pub fn alias_routing(r: &AliasRouting) -> Result<(), MetaError> {
    if !r.weight.is_finite() || !(0.0..=1.0).contains(&r.weight) {
        return Err(MetaError::validation(
            "1 validation error detected: Value at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]",
        ));
    }
    Ok(())
}

pub fn event_invoke_config(c: &EventInvokeConfig) -> Result<(), MetaError> {
    in_range(
        "maximumRetryAttempts",
        c.maximum_retry_attempts,
        0,
        ASYNC_RETRIES_MAX,
    )?;
    in_range(
        "maximumEventAgeInSeconds",
        c.maximum_event_age_s,
        ASYNC_EVENT_AGE_MIN_S,
        ASYNC_EVENT_AGE_MAX_S,
    )
}

/// Checks a deployment package: size limits, a readable zip, and its unzipped size.
/// Returns the unzipped size.
pub fn code_zip(zip_bytes: &[u8]) -> Result<u64, MetaError> {
    use crate::error::ErrorKind;
    if zip_bytes.len() as u64 > CODE_ZIPPED_MAX_BYTES {
        return Err(MetaError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "Unzipped size must be smaller than {CODE_ZIPPED_MAX_BYTES} bytes (zipped {} bytes)",
                zip_bytes.len()
            ),
        ));
    }
    let bad = |e: &dyn std::fmt::Display| {
        MetaError::new(ErrorKind::InvalidParameterValue, format!("Could not unzip uploaded file. Please check your file, then try to upload again. ({e})"))
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).map_err(|e| bad(&e))?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| bad(&e))?;
        // Count real bytes, not the header's claim, so a zip bomb cannot lie its way in.
        let mut sink = std::io::sink();
        let limit = CODE_UNZIPPED_MAX_BYTES - total + 1;
        let n = std::io::copy(&mut (&mut file).take(limit), &mut sink).map_err(|e| bad(&e))?;
        total += n;
        if total > CODE_UNZIPPED_MAX_BYTES {
            return Err(MetaError::invalid(format!(
                "Unzipped size must be smaller than {CODE_UNZIPPED_MAX_BYTES} bytes"
            )));
        }
    }
    Ok(total)
}

/// Lambda's `CodeSha256`: base64 of the SHA-256 of the zip.
pub fn code_sha256(zip_bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> FunctionConfig {
        FunctionConfig {
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            role: "arn:aws:iam::000000000000:role/lambda-role".into(),
            ..FunctionConfig::default()
        }
    }

    #[test]
    fn log_groups_name_a_function_or_an_edge_run_of_one() {
        for ok in ["f", "my-fn_1", "us-east-1.f", "eu-west-1.my-fn_1"] {
            assert!(log_group_function(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a.b",
            "us-east-1.",
            "us-east-1.a.b",
            "us-east-1./x",
            "../x",
            "f/x",
        ] {
            assert!(!log_group_function(bad), "{bad}");
        }
        assert_eq!(log_group_function_of("f", "us-east-1", true), "us-east-1.f");
        assert_eq!(log_group_function_of("f", "us-east-1", false), "f");
    }

    proptest! {
        #[test]
        fn memory_accepted_exactly_in_range(m in 0u32..20_000) {
            let c = FunctionConfig { memory_mb: m, ..config() };
            prop_assert_eq!(function_config(&c).is_ok(), (128..=10_240).contains(&m));
        }

        #[test]
        fn timeout_accepted_exactly_in_range(t in 0u32..2_000) {
            let c = FunctionConfig { timeout_s: t, ..config() };
            prop_assert_eq!(function_config(&c).is_ok(), (1..=900).contains(&t));
        }

        #[test]
        fn ephemeral_accepted_exactly_in_range(e in 0u32..20_000) {
            let c = FunctionConfig { ephemeral_storage_mb: e, ..config() };
            prop_assert_eq!(function_config(&c).is_ok(), (512..=10_240).contains(&e));
        }

        #[test]
        fn function_names_follow_lambda_pattern(name in "\\PC{0,80}") {
            let ok = !name.is_empty() && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            prop_assert_eq!(function_name(&name).is_ok(), ok);
        }

        #[test]
        fn environment_limit_is_4kb(n in 0usize..5000) {
            let mut vars = BTreeMap::new();
            vars.insert("KEY".to_string(), "x".repeat(n));
            prop_assert_eq!(environment(&vars).is_ok(), n + 3 <= 4096);
        }

        #[test]
        fn alias_weights_in_unit_interval(w in -2.0f64..2.0) {
            let r = AliasRouting { version: 1, weight: w };
            prop_assert_eq!(alias_routing(&r).is_ok(), (0.0..=1.0).contains(&w));
        }
    }

    #[test]
    fn reserved_environment_keys_are_refused() {
        let mut vars = BTreeMap::new();
        vars.insert("AWS_REGION".to_string(), "x".to_string());
        let err = environment(&vars).unwrap_err();
        assert!(err.message.contains("reserved keys"), "{err}");
    }

    #[test]
    fn unknown_runtime_is_refused() {
        let c = FunctionConfig {
            runtime: "cobol85".into(),
            ..config()
        };
        assert_eq!(
            function_config(&c).unwrap_err().kind,
            crate::ErrorKind::InvalidParameterValue
        );
    }

    #[test]
    fn bad_role_is_a_validation_error() {
        let c = FunctionConfig {
            role: "not-an-arn".into(),
            ..config()
        };
        assert_eq!(
            function_config(&c).unwrap_err().kind,
            crate::ErrorKind::Validation
        );
    }

    #[test]
    fn numeric_alias_names_are_refused() {
        assert!(alias_name("123").is_err());
        assert!(alias_name("prod").is_ok());
    }

    #[test]
    fn not_a_zip_is_refused() {
        let err = code_zip(b"definitely not a zip").unwrap_err();
        assert!(err.message.contains("Could not unzip"), "{err}");
    }

    #[test]
    fn a_zip_is_measured() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("app.py", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, &[b'a'; 1000]).unwrap();
            w.finish().unwrap();
        }
        assert_eq!(code_zip(buf.get_ref()).unwrap(), 1000);
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(account_id("000000000000").is_ok());
        assert!(account_id("12345").is_err());
        assert!(account_id("12345678901a").is_err());
    }
}

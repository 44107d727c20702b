//! Destinations of async invocations and the record Lambda sends them.
//!
//! Nimbus delivers to Lambda functions only: the record becomes an async event of the
//! destination function, queued in the same metadata entry that completes the source
//! event. SQS, SNS, EventBridge and S3 destinations are refused when configured, so a
//! record is never silently lost to an unsupported target.

use nimbus_types::arn::parse_function_ref;
use nimbus_types::limits::ASYNC_PAYLOAD_MAX_BYTES;
use nimbus_types::FunctionKey;
use serde_json::{json, Value};

use super::policy::Condition;
use crate::core::ApiError;

/// A destination function and the qualifier it is invoked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationFunction {
    pub key: FunctionKey,
    pub qualifier: Option<String>,
}

/// Checks a destination ARN as `PutFunctionEventInvokeConfig` receives it: a Lambda
/// function of the caller's account in this region.
pub fn parse(arn: &str, account_id: &str, region: &str) -> Result<DestinationFunction, ApiError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let service = match parts.as_slice() {
        ["arn", partition, service, ..] if partition.starts_with("aws") => *service,
        _ => {
            return Err(ApiError::invalid(format!(
                "The destination ARN {arn} is invalid."
            )))
        }
    };
    if service != "lambda" {
        let kind = match service {
            "sqs" => "Amazon SQS queues",
            "sns" => "Amazon SNS topics",
            "events" => "Amazon EventBridge event buses",
            "s3" => "Amazon S3 buckets",
            _ => "this service",
        };
        return Err(ApiError::invalid(format!(
            "Destinations on {kind} are not supported by Nimbus ({arn}); use a Lambda function ARN"
        )));
    }
    let r = parse_function_ref(arn)
        .map_err(|_| ApiError::invalid(format!("The destination ARN {arn} is invalid.")))?;
    if r.account_id.as_deref() != Some(account_id) || r.region.as_deref() != Some(region) {
        return Err(ApiError::invalid(format!(
            "The destination function {arn} must be in account {account_id} and region {region}"
        )));
    }
    Ok(DestinationFunction {
        key: FunctionKey::new(account_id, region, &r.name),
        qualifier: r.qualifier,
    })
}

/// What the function answered, for the record's `responseContext` and `responsePayload`.
pub struct Response<'a> {
    pub executed_version: &'a str,
    pub function_error: Option<&'a str>,
    pub payload: &'a [u8],
}

/// Lambda's invocation record, as a destination function receives it.
pub struct Record<'a> {
    pub request_id: &'a str,
    /// The function's ARN with the qualifier it ran under (`…:$LATEST` when unqualified).
    pub function_arn: &'a str,
    pub condition: Condition,
    pub approximate_invoke_count: u32,
    pub timestamp_ms: u64,
    pub request_payload: &'a [u8],
    /// `None` when the function never ran (the event aged out first).
    pub response: Option<Response<'a>>,
}

/// JSON if it parses as JSON (payloads are JSON), else as a string.
fn payload_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn timestamp(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

impl Record<'_> {
    /// The record's JSON. A record over the async payload limit drops the response
    /// payload, then the request payload (logged), rather than not being delivered.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = json!({
            "version": "1.0",
            "timestamp": timestamp(self.timestamp_ms),
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": self.function_arn,
                "condition": self.condition.as_str(),
                "approximateInvokeCount": self.approximate_invoke_count,
            },
            "requestPayload": payload_value(self.request_payload),
        });
        if let Some(r) = &self.response {
            let mut ctx = json!({ "statusCode": 200, "executedVersion": r.executed_version });
            if let Some(e) = r.function_error {
                ctx["functionError"] = e.into();
            }
            v["responseContext"] = ctx;
            v["responsePayload"] = payload_value(r.payload);
        }
        let mut bytes = v.to_string().into_bytes();
        for field in ["responsePayload", "requestPayload"] {
            if bytes.len() <= ASYNC_PAYLOAD_MAX_BYTES {
                break;
            }
            if v.get(field).is_some() {
                tracing::warn!(
                    request_id = self.request_id,
                    "destination record over {ASYNC_PAYLOAD_MAX_BYTES} bytes: {field} left out"
                );
                v[field] = Value::Null;
                bytes = v.to_string().into_bytes();
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_in_the_account_and_region_are_accepted() {
        let d = parse(
            "arn:aws:lambda:us-east-1:000000000000:function:dest:live",
            "000000000000",
            "us-east-1",
        )
        .unwrap();
        assert_eq!(d.key.name, "dest");
        assert_eq!(d.qualifier.as_deref(), Some("live"));
    }

    #[test]
    fn other_destinations_are_refused_with_lambdas_error() {
        for arn in [
            "not-an-arn",
            "arn:aws:sqs:us-east-1:000000000000:queue",
            "arn:aws:sns:us-east-1:000000000000:topic",
            "arn:aws:events:us-east-1:000000000000:event-bus/default",
            "arn:aws:lambda:us-east-1:111111111111:function:other-account",
            "arn:aws:lambda:eu-west-1:000000000000:function:other-region",
            "arn:aws:lambda:us-east-1:000000000000:function:bad name",
        ] {
            let e = parse(arn, "000000000000", "us-east-1").unwrap_err();
            assert_eq!(
                (e.status, e.error_type.as_str()),
                (400, "InvalidParameterValueException"),
                "{arn}"
            );
        }
    }

    #[test]
    fn record_has_lambdas_shape() {
        let r = Record {
            request_id: "id-1",
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
            condition: Condition::RetriesExhausted,
            approximate_invoke_count: 3,
            timestamp_ms: 1_573_755_365_568,
            request_payload: br#"{"a":1}"#,
            response: Some(Response {
                executed_version: "$LATEST",
                function_error: Some("Unhandled"),
                payload: br#"{"errorType":"ValueError"}"#,
            }),
        };
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["version"], "1.0");
        assert_eq!(v["timestamp"], "2019-11-14T18:16:05.568Z");
        assert_eq!(v["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(v["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(v["requestPayload"]["a"], 1);
        assert_eq!(v["responseContext"]["functionError"], "Unhandled");
        assert_eq!(v["responsePayload"]["errorType"], "ValueError");
    }

    #[test]
    fn oversize_record_drops_payloads_to_fit() {
        let big = format!("\"{}\"", "x".repeat(ASYNC_PAYLOAD_MAX_BYTES - 10));
        let half = format!("\"{}\"", "x".repeat(ASYNC_PAYLOAD_MAX_BYTES / 2));
        let r = Record {
            request_id: "id",
            function_arn: "arn",
            condition: Condition::Success,
            approximate_invoke_count: 1,
            timestamp_ms: 0,
            request_payload: half.as_bytes(),
            response: Some(Response {
                executed_version: "1",
                function_error: None,
                payload: big.as_bytes(),
            }),
        };
        let bytes = r.to_json();
        assert!(bytes.len() <= ASYNC_PAYLOAD_MAX_BYTES);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["responsePayload"].is_null() && v["requestPayload"].is_string());
        // Both too large: both go.
        let r = Record {
            request_payload: big.as_bytes(),
            ..r
        };
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert!(v["responsePayload"].is_null() && v["requestPayload"].is_null());
        assert_eq!(v["requestContext"]["requestId"], "id");
    }
}

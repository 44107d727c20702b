//! Lambda's small vocabularies as types: what a request header or a configuration field
//! may say, parsed once at the edge so the rest of Nimbus matches on variants.

use std::fmt;

use crate::error::MetaError;
use crate::limits;

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvocationType {
    /// Synchronous: the caller waits for the function's answer.
    #[default]
    RequestResponse,
    /// Asynchronous: queued durably, answered 202.
    Event,
    /// Checks the request and the caller's access; runs nothing (204).
    DryRun,
}

impl InvocationType {
    /// Reads the header; absent means `RequestResponse`.
    pub fn parse(header: Option<&str>) -> Result<Self, MetaError> {
        match header {
            None | Some("RequestResponse") => Ok(Self::RequestResponse),
            Some("Event") => Ok(Self::Event),
            Some("DryRun") => Ok(Self::DryRun),
            Some(other) => Err(MetaError::validation(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            ))),
        }
    }

    /// The largest request payload this invocation type accepts.
    pub fn payload_max(self) -> usize {
        match self {
            Self::Event => limits::ASYNC_PAYLOAD_MAX_BYTES,
            Self::RequestResponse | Self::DryRun => limits::SYNC_PAYLOAD_MAX_BYTES,
        }
    }
}

impl fmt::Display for InvocationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RequestResponse => "RequestResponse",
            Self::Event => "Event",
            Self::DryRun => "DryRun",
        })
    }
}

/// `X-Amz-Log-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogType {
    #[default]
    None,
    /// The last 4 KB of the log in `X-Amz-Log-Result`.
    Tail,
}

impl LogType {
    /// Reads the header; absent means `None`.
    pub fn parse(header: Option<&str>) -> Result<Self, MetaError> {
        match header {
            None | Some("None") => Ok(Self::None),
            Some("Tail") => Ok(Self::Tail),
            Some(other) => Err(MetaError::validation(format!(
                "Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
            ))),
        }
    }
}

/// `LoggingConfig.LogFormat`: how the platform's lines (and the runtime's) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `START RequestId: …`, `END …`, `REPORT …` lines.
    #[default]
    Text,
    /// `{"time","type":"platform.start","record":{…}}` records.
    Json,
}

impl LogFormat {
    /// `JSON` (any case) is JSON; anything else is text, Lambda's default.
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("json") {
            Self::Json
        } else {
            Self::Text
        }
    }

    /// Lambda's spelling (also the value of `AWS_LAMBDA_LOG_FORMAT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Json => "JSON",
        }
    }
}

/// Which concurrency an invocation draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConcurrencyPool {
    /// Shared by the account's functions without reserved concurrency in a region.
    Unreserved { account: String, region: String },
    /// One function's reserved concurrency.
    Reserved {
        account: String,
        region: String,
        function: String,
    },
    /// An edge location's budget of the account's concurrency, held in shares by the
    /// location's gateways (`EdgeBudget`).
    EdgeBudget {
        account: String,
        region: String,
        location: String,
    },
}

impl ConcurrencyPool {
    /// The pool of `function` given its reserved concurrency, if any.
    pub fn of(account: &str, region: &str, function: &str, reserved: Option<u32>) -> Self {
        match reserved {
            Some(_) => Self::Reserved {
                account: account.into(),
                region: region.into(),
                function: function.into(),
            },
            None => Self::Unreserved {
                account: account.into(),
                region: region.into(),
            },
        }
    }

    /// Lambda's `Reason` when this pool throttles.
    pub fn throttle_reason(&self) -> &'static str {
        match self {
            Self::Reserved { .. } => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Self::Unreserved { .. } | Self::EdgeBudget { .. } => {
                "ConcurrentInvocationLimitExceeded"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn headers_parse_to_variants_and_bad_values_are_validation_errors() {
        assert_eq!(
            InvocationType::parse(None).unwrap(),
            InvocationType::RequestResponse
        );
        assert_eq!(
            InvocationType::parse(Some("Event")).unwrap(),
            InvocationType::Event
        );
        assert_eq!(
            InvocationType::parse(Some("DryRun")).unwrap(),
            InvocationType::DryRun
        );
        let e = InvocationType::parse(Some("event")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("'event'"), "{}", e.message);
        assert_eq!(LogType::parse(Some("Tail")).unwrap(), LogType::Tail);
        assert_eq!(LogType::parse(None).unwrap(), LogType::None);
        assert_eq!(
            LogType::parse(Some("tail")).unwrap_err().kind,
            ErrorKind::Validation
        );
        assert_eq!(
            InvocationType::Event.payload_max(),
            limits::ASYNC_PAYLOAD_MAX_BYTES
        );
        assert_eq!(InvocationType::DryRun.to_string(), "DryRun");
    }

    #[test]
    fn log_format_and_pools() {
        assert_eq!(LogFormat::parse("json"), LogFormat::Json);
        assert_eq!(LogFormat::parse("Text"), LogFormat::Text);
        assert_eq!(LogFormat::parse("anything"), LogFormat::Text);
        assert_eq!(LogFormat::Json.as_str(), "JSON");
        let r = ConcurrencyPool::of("a", "r", "f", Some(0));
        assert_eq!(
            r.throttle_reason(),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        let u = ConcurrencyPool::of("a", "r", "f", None);
        assert_eq!(
            u,
            ConcurrencyPool::of("a", "r", "g", None),
            "shared by functions"
        );
        assert_eq!(u.throttle_reason(), "ConcurrentInvocationLimitExceeded");
    }
}

//! The gateway's one error type: what the core answers when a call fails, in the Lambda
//! API's own terms (status, error name, message, throttle reason). Its wire form (the
//! `x-amzn-ErrorType` header and JSON body) is written by the HTTP layer alone,
//! [`crate::http::wire`].

use nimbus_meta::ClientError;
use nimbus_types::{ErrorKind, MetaError};

/// An error answered to an API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
    /// `Reason` of a `TooManyRequestsException`.
    pub reason: Option<String>,
    /// `User` or `Service`.
    pub fault: &'static str,
}

impl ApiError {
    pub fn new(status: u16, error_type: &str, message: impl Into<String>) -> Self {
        let fault = if status >= 500 { "Service" } else { "User" };
        Self {
            status,
            error_type: error_type.into(),
            message: message.into(),
            reason: None,
            fault,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "ResourceNotFoundException", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValueException", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    /// A body that is not the JSON the operation expects.
    pub fn bad_content(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidRequestContentException", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestTooLargeException", message)
    }

    pub fn throttled(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::new(429, "TooManyRequestsException", message)
        }
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self::new(500, "ServiceException", message)
    }

    /// `TooManyRequestsException`: admission refused the call.
    pub fn is_throttle(&self) -> bool {
        self.status == 429
    }

    /// The function, version or alias does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// A fault on Nimbus's side rather than in the request.
    pub fn is_service_fault(&self) -> bool {
        self.status >= 500
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let status = match e.kind {
            // Unavailable metadata is a service-side fault as far as the caller sees.
            ErrorKind::Unavailable => 500,
            k => k.http_status(),
        };
        Self::new(status, e.kind.lambda_name(), e.message)
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Meta(m) => m.into(),
            // Cut off from the core (every metadata node down or unreachable): say so,
            // and that nothing was changed, rather than pass on a transport error.
            ClientError::Unavailable(detail) => ApiError::service(format!(
                "The Nimbus core (its metadata cluster) cannot be reached from this gateway, so nothing was changed; retry when it is reachable again. ({detail})"
            )),
            other => ApiError::service(format!("metadata cluster: {other}")),
        }
    }
}

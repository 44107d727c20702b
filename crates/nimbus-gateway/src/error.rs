//! The gateway's one error type and its mapping onto the Lambda API's wire format:
//! HTTP status, `x-amzn-ErrorType` header, and a JSON body `{"Type", "message"}`
//! (plus `Reason` for throttles), so the SDKs raise the right exception.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nimbus_meta::ClientError;
use nimbus_types::{ErrorKind, MetaError};

use crate::sigv4::SigError;

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
            other => ApiError::service(format!("metadata cluster: {other}")),
        }
    }
}

impl From<SigError> for ApiError {
    fn from(e: SigError) -> Self {
        // Every authentication failure is a 403, as on AWS.
        Self::new(403, e.error_type(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "Type": self.fault, "message": self.message });
        if let Some(r) = &self.reason {
            body["Reason"] = r.clone().into();
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.error_type) {
            resp.headers_mut().insert("x-amzn-ErrorType", v);
        }
        resp
    }
}

//! CloudWatch Logs' error format (AWS JSON 1.1): status 400 (500 for service faults), a
//! body `{"__type": "<Name>", "message": "…"}`, and the same name in `x-amzn-ErrorType`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::core::ApiError;

/// An error answered to a CloudWatch Logs caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct LogsError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl LogsError {
    pub fn new(status: u16, error_type: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// `InvalidParameterException`: a bad value in the request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterException", message)
    }

    /// `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(400, "ResourceNotFoundException", message)
    }

    /// `ServiceUnavailableException`: no worker could answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(500, "ServiceUnavailableException", message)
    }
}

impl From<ApiError> for LogsError {
    /// Errors raised before an operation runs (authentication, body size) keep their name.
    fn from(e: ApiError) -> Self {
        let status = if e.status >= 500 { 500 } else { e.status };
        Self::new(status, &e.error_type, e.message)
    }
}

impl IntoResponse for LogsError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.error_type, "message": self.message });
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.error_type) {
            headers.insert("x-amzn-ErrorType", v);
        }
        resp
    }
}

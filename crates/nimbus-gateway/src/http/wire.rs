//! The one mapping of [`ApiError`] onto the Lambda API's wire format: HTTP status,
//! `x-amzn-ErrorType` header, and a JSON body `{"Type", "message"}` (plus `Reason` for
//! throttles), so the SDKs raise the right exception.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::sigv4::SigError;
use crate::core::error::ApiError;

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

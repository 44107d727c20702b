//! AWS's Query protocol, as IAM and STS speak it: `POST /` with a form body
//! (`Action=CreateUser&Version=2010-05-08&UserName=…`), answered in XML
//! (`<CreateUserResponse><CreateUserResult>…</CreateUserResult><ResponseMetadata>…`),
//! errors as `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>`.
//! The AWS CLI and boto3 reach it at the same endpoint as Lambda; the request's
//! signature says which service it is for.
//!
//! Layout: this file (parameters, the XML writer, errors, dispatch), [`iam`], [`sts`].

pub mod iam;
pub mod sts;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use quick_xml::escape::escape;

use super::RequestId;
use crate::core::access::Caller;
use crate::core::{ApiError, Gateway};

/// The service a Query request was signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Iam,
    Sts,
}

impl Service {
    pub fn from_scope(service: &str) -> Option<Self> {
        match service {
            "iam" => Some(Self::Iam),
            "sts" => Some(Self::Sts),
            _ => None,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Service::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            Service::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
        }
    }
}

/// The form parameters of a request.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn action(&self) -> &str {
        self.0.get("Action").map_or("", String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter, or IAM's validation error naming it.
    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(QueryError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))),
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An error in the Query protocol's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl QueryError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidInput", message)
    }
    pub fn no_such_entity(message: impl Into<String>) -> Self {
        Self::new(404, "NoSuchEntity", message)
    }
    pub fn malformed_policy(message: impl Into<String>) -> Self {
        Self::new(400, "MalformedPolicyDocument", message)
    }

    fn render(&self, service: Service, request_id: &str) -> Response {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"{}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            service.namespace(),
            escape(self.code.as_str()),
            escape(self.message.as_str()),
            escape(request_id)
        );
        xml_response(self.status, body)
    }
}

/// Lambda-shaped errors (the core's, the metadata cluster's) in IAM's vocabulary.
impl From<ApiError> for QueryError {
    fn from(e: ApiError) -> Self {
        let code = match e.error_type.as_str() {
            "ResourceNotFoundException" => "NoSuchEntity",
            "ResourceConflictException" => "EntityAlreadyExists",
            "AccessDeniedException" => "AccessDenied",
            "UnrecognizedClientException" => "InvalidClientTokenId",
            "ExpiredTokenException" => "ExpiredToken",
            "InvalidSignatureException" => "SignatureDoesNotMatch",
            "MissingAuthenticationTokenException" => "MissingAuthenticationToken",
            "TooManyRequestsException" => "Throttling",
            "ValidationException" => "ValidationError",
            "InvalidParameterValueException" => "InvalidInput",
            "RequestTooLargeException" => "RequestEntityTooLarge",
            _ if e.status >= 500 => "ServiceFailure",
            other => other,
        };
        Self::new(e.status, code, e.message)
    }
}

impl From<nimbus_meta::ClientError> for QueryError {
    fn from(e: nimbus_meta::ClientError) -> Self {
        use nimbus_types::ErrorKind;
        match &e {
            nimbus_meta::ClientError::Meta(m) => match m.kind {
                ErrorKind::ResourceNotFound => Self::no_such_entity(m.message.clone()),
                ErrorKind::ResourceConflict => {
                    Self::new(409, "EntityAlreadyExists", m.message.clone())
                }
                ErrorKind::DeleteConflict => Self::new(409, "DeleteConflict", m.message.clone()),
                ErrorKind::LimitExceeded => Self::new(409, "LimitExceeded", m.message.clone()),
                ErrorKind::MalformedPolicy => Self::malformed_policy(m.message.clone()),
                _ => ApiError::from(e).into(),
            },
            _ => ApiError::from(e).into(),
        }
    }
}

/// An XML response body under construction: elements are opened, filled and closed in
/// order; every text is escaped.
#[derive(Default)]
pub struct Xml(String);

impl Xml {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        self.0.push('>');
        self
    }
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }
    pub fn leaf(&mut self, name: &str, value: &str) -> &mut Self {
        self.open(name);
        self.0.push_str(&escape(value));
        self.close(name)
    }
    /// A policy document, URL-encoded as IAM returns them (the SDKs decode it).
    pub fn policy(&mut self, name: &str, document: &str) -> &mut Self {
        let encoded: String =
            percent_encoding::utf8_percent_encode(document, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        self.leaf(name, &encoded)
    }
}

/// The success envelope of `action`, around `result` (the `…Result` element's content).
fn envelope(service: Service, action: &str, result: Option<Xml>, request_id: &str) -> Response {
    let mut body = format!("<{action}Response xmlns=\"{}\">", service.namespace());
    if let Some(r) = result {
        body.push_str(&format!("<{action}Result>{}</{action}Result>", r.0));
    }
    body.push_str(&format!(
        "<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    ));
    xml_response(200, body)
}

fn xml_response(status: u16, body: String) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    resp
}

/// Renders an authentication or authorization failure of a Query request.
pub fn refusal(service: Service, e: ApiError, request_id: &str) -> Response {
    QueryError::from(e).render(service, request_id)
}

/// `POST /` for IAM and STS.
pub async fn dispatch(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(service): Extension<Service>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Bytes,
) -> Response {
    let params = Params::parse(&body);
    let action = params.action().to_string();
    let result = match service {
        Service::Iam => iam::run(&gw, &caller, &params).await,
        Service::Sts => sts::run(&gw, &caller, &params).await,
    };
    match result {
        Ok(xml) => envelope(service, &action, xml, &request_id),
        Err(e) => {
            tracing::info!(request_id, action, code = e.code, "query request failed");
            e.render(service, &request_id)
        }
    }
}

/// An ISO 8601 time as IAM writes it.
pub fn iso_time(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

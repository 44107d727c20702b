//! Lambda's payload format 2.0 for function URLs: the event an HTTP request to a URL
//! becomes, the HTTP response a function's result becomes, and the URL's CORS answers.
//! Functions written against Lambda parse these shapes field by field, so they follow
//! what Lambda builds rather than what would be tidier. Pure: the URL handler does the
//! I/O and passes in what it received.

use axum::http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, COOKIE, ORIGIN,
    USER_AGENT,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

/// What the gateway knows of one URL request.
#[derive(Debug, Clone)]
pub struct UrlRequest<'a> {
    pub method: &'a Method,
    /// As received, percent-encoded.
    pub raw_path: &'a str,
    /// Without the `?`; `""` when there is none.
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    /// The URL's id, which Lambda reports as both `apiId` and `domainPrefix`.
    pub url_id: &'a str,
    /// The Host header's host (no port), e.g. `abc123.lambda-url.us-east-1.localhost`.
    pub domain_name: String,
    pub account_id: &'a str,
    pub request_id: &'a str,
    pub now: time::OffsetDateTime,
}

/// The event for one URL request, as Lambda builds it. Keys Lambda leaves out when they
/// have nothing to say (`cookies`, `queryStringParameters`, `body`) are left out here too:
/// handlers test for their presence.
pub fn event(req: &UrlRequest<'_>) -> Value {
    let mut ev = Map::new();
    ev.insert("version".into(), json!("2.0"));
    ev.insert("routeKey".into(), json!("$default"));
    ev.insert("rawPath".into(), json!(req.raw_path));
    ev.insert("rawQueryString".into(), json!(req.raw_query));
    let cookies = cookies(req.headers);
    if !cookies.is_empty() {
        ev.insert("cookies".into(), json!(cookies));
    }
    ev.insert("headers".into(), Value::Object(event_headers(req.headers)));
    if let Some(params) = query_parameters(req.raw_query) {
        ev.insert("queryStringParameters".into(), Value::Object(params));
    }
    ev.insert("requestContext".into(), request_context(req));
    let mut is_base64 = false;
    if !req.body.is_empty() {
        let (body, encoded) = event_body(req.headers, req.body);
        ev.insert("body".into(), json!(body));
        is_base64 = encoded;
    }
    ev.insert("isBase64Encoded".into(), json!(is_base64));
    Value::Object(ev)
}

/// Every cookie of every `Cookie` header, one string each. Lambda moves cookies out of
/// `headers` into this list, so a function sees each cookie exactly once.
fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Header names lower-cased (the `HeaderMap` already holds them so), repeated headers
/// joined with `,`, and no `cookie` (it is in `cookies`).
fn event_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .keys()
        .filter(|name| **name != COOKIE)
        .map(|name| (name.as_str().to_string(), json!(joined(headers, name))))
        .collect()
}

/// All values of one header joined with `,` (header values that are not UTF-8 are kept
/// lossily rather than dropping the header).
fn joined(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// The decoded query parameters, repeated keys joined with `,` in the order given;
/// `None` when there is no query, so the key is left out of the event.
fn query_parameters(raw_query: &str) -> Option<Map<String, Value>> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode_query(k), decode_query(v));
        let existing = params.iter().position(|(key, _)| *key == k);
        match existing {
            Some(i) => {
                params[i].1.push(',');
                params[i].1.push_str(&v);
            }
            None => params.push((k, v)),
        }
    }
    if params.is_empty() {
        return None;
    }
    Some(params.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

/// A query key or value: `+` is a space (form encoding, as browsers send it), then
/// percent-decoding.
fn decode_query(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn request_context(req: &UrlRequest<'_>) -> Value {
    let domain_prefix = req.domain_name.split('.').next().unwrap_or_default();
    let user_agent = req
        .headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let path = percent_encoding::percent_decode_str(req.raw_path).decode_utf8_lossy();
    json!({
        "accountId": req.account_id,
        "apiId": req.url_id,
        "domainName": req.domain_name,
        "domainPrefix": domain_prefix,
        "http": {
            "method": req.method.as_str(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": user_agent,
        },
        "requestId": req.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": request_time(req.now),
        "timeEpoch": epoch_ms(req.now),
    })
}

/// The request time in the access-log form Lambda uses, `12/Mar/2020:19:03:58 +0000`,
/// always in UTC.
fn request_time(now: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    now.to_offset(time::UtcOffset::UTC)
        .format(format)
        .unwrap_or_default()
}

fn epoch_ms(now: time::OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The body as the event carries it, and whether it is base64: text only when the
/// content type says text and the bytes are UTF-8, so a function never receives a
/// mangled binary body (nor a base64 one it did not expect for JSON or forms).
fn event_body(headers: &HeaderMap, body: &[u8]) -> (String, bool) {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if is_textual(content_type) {
        if let Ok(text) = std::str::from_utf8(body) {
            return (text.to_string(), false);
        }
    }
    (STANDARD.encode(body), true)
}

/// Whether a content type is one Lambda passes as text. No content type is not text:
/// nothing says the bytes are.
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
        )
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
}

/// The HTTP response a function's result becomes. Each of `cookies` becomes one
/// `Set-Cookie` header (they are not repeated in `headers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
    pub body: Vec<u8>,
}

/// A function result that cannot become an HTTP response: the gateway answers 502, as
/// Lambda does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the function's response is not valid JSON: {0}")]
    NotJson(String),
    #[error("invalid statusCode {0}: must be an integer from 100 to 599")]
    StatusCode(String),
    #[error("invalid headers: {0}")]
    Headers(String),
    #[error("invalid cookies: {0}")]
    Cookies(String),
    #[error("invalid body: {0}")]
    Body(String),
}

/// Headers a function may not set: the gateway frames the body itself, and a stale
/// length or a second transfer coding would corrupt the response on the wire.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// Turns a function's result into the URL's response, by Lambda's rules: a JSON object
/// with a `statusCode` key is taken apart; any other JSON is the body of a 200
/// `application/json` response, unchanged; an empty result is an empty 200.
pub fn response(payload: &[u8]) -> Result<UrlResponse, ResponseError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(UrlResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            cookies: Vec::new(),
            body: Vec::new(),
        });
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    match value {
        Value::Object(obj) if obj.contains_key("statusCode") => structured(&obj),
        _ => Ok(UrlResponse {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            cookies: Vec::new(),
            body: payload.to_vec(),
        }),
    }
}

/// An object with `statusCode`: `multiValueHeaders` and unknown keys are ignored, and
/// the content type defaults to `application/json` as Lambda's does.
fn structured(obj: &Map<String, Value>) -> Result<UrlResponse, ResponseError> {
    let status = status_code(&obj["statusCode"])?;
    let mut headers = response_headers(obj.get("headers"))?;
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Ok(UrlResponse {
        status,
        headers,
        cookies: response_cookies(obj.get("cookies"))?,
        body: response_body(obj.get("body"), obj.get("isBase64Encoded"))?,
    })
}

/// The head a streamed response's prelude (`awslambda.HttpResponseStream.from`) gives:
/// the keys of a structured result but `body`, checked by the same rules; `statusCode`
/// defaults to 200 and no content type is added (the stream's bytes are the body).
pub fn prelude(obj: &Map<String, Value>) -> Result<UrlResponse, ResponseError> {
    Ok(UrlResponse {
        status: match obj.get("statusCode") {
            None | Some(Value::Null) => StatusCode::OK,
            Some(v) => status_code(v)?,
        },
        headers: response_headers(obj.get("headers"))?,
        cookies: response_cookies(obj.get("cookies"))?,
        body: Vec::new(),
    })
}

fn status_code(v: &Value) -> Result<StatusCode, ResponseError> {
    v.as_u64()
        .filter(|n| (100..=599).contains(n))
        .and_then(|n| StatusCode::from_u16(u16::try_from(n).ok()?).ok())
        .ok_or_else(|| ResponseError::StatusCode(v.to_string()))
}

/// `headers`: an object whose values are strings, or scalars written as text; null
/// values are dropped. Names and values must be valid HTTP, or the response could not
/// be sent at all.
fn response_headers(v: Option<&Value>) -> Result<Vec<(String, String)>, ResponseError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(ResponseError::Headers(format!(
                "expected an object, got {other}"
            )))
        }
    };
    let mut out = Vec::new();
    for (name, value) in obj {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(ResponseError::Headers(format!(
                    "value of {name} is not a string"
                )))
            }
        };
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ResponseError::Headers(format!(
                "invalid header name {name:?}"
            )));
        }
        if HeaderValue::from_str(&value).is_err() {
            return Err(ResponseError::Headers(format!("invalid value for {name}")));
        }
        if FRAMING_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// `cookies`: an array of `Set-Cookie` values.
fn response_cookies(v: Option<&Value>) -> Result<Vec<String>, ResponseError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ResponseError::Cookies(format!(
                "expected an array of strings, got {other}"
            )))
        }
    };
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(s) if HeaderValue::from_str(s).is_ok() => Ok(s.to_string()),
            _ => Err(ResponseError::Cookies(format!("invalid cookie {item}"))),
        })
        .collect()
}

/// `body`: a string, base64-decoded when `isBase64Encoded` is true; absent is empty.
fn response_body(
    body: Option<&Value>,
    is_base64: Option<&Value>,
) -> Result<Vec<u8>, ResponseError> {
    let encoded = match is_base64 {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ResponseError::Body(format!(
                "isBase64Encoded must be a boolean, got {other}"
            )))
        }
    };
    let text = match body {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ResponseError::Body("body must be a string".into())),
    };
    if encoded {
        STANDARD
            .decode(text)
            .map_err(|e| ResponseError::Body(format!("body is not valid base64: {e}")))
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// A URL's CORS configuration, in the Lambda API's own field names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origins: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_methods: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_headers: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_credentials: bool,
}

/// An explicit `null` reads as the default (SDKs may send one for an unset member).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The methods `AllowMethods` may name.
const CORS_METHODS: [&str; 7] = ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"];

/// Checks a CORS configuration against Lambda's limits, answering Lambda's own
/// `ValidationException` message (every violation, counted) when it breaks them.
pub fn validate_cors(cors: &Cors) -> Result<(), String> {
    let mut errors = Vec::new();
    check_list(
        &mut errors,
        "allowOrigins",
        &cors.allow_origins,
        100,
        1,
        253,
    );
    check_list(
        &mut errors,
        "allowMethods",
        &cors.allow_methods,
        6,
        0,
        usize::MAX,
    );
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            errors.push(constraint(
                m,
                &format!("cors.allowMethods.{}.member", i + 1),
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    CORS_METHODS.join(", ")
                ),
            ));
        }
    }
    check_list(
        &mut errors,
        "allowHeaders",
        &cors.allow_headers,
        100,
        0,
        1024,
    );
    check_list(
        &mut errors,
        "exposeHeaders",
        &cors.expose_headers,
        100,
        0,
        1024,
    );
    if let Some(age) = cors.max_age.filter(|a| *a > 86_400) {
        errors.push(constraint(
            &age.to_string(),
            "cors.maxAge",
            "Member must have value less than or equal to 86400",
        ));
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(format!("1 validation error detected: {}", errors[0])),
        n => Err(format!(
            "{n} validation errors detected: {}",
            errors.join("; ")
        )),
    }
}

/// A list's item count, and each item's length (in characters, bounds inclusive).
fn check_list(
    errors: &mut Vec<String>,
    field: &str,
    items: &[String],
    max_items: usize,
    min_len: usize,
    max_len: usize,
) {
    if items.len() > max_items {
        errors.push(constraint(
            &format!("[{}]", items.join(", ")),
            &format!("cors.{field}"),
            &format!("Member must have length less than or equal to {max_items}"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let len = item.chars().count();
        let rule = if len > max_len {
            format!("Member must have length less than or equal to {max_len}")
        } else if len < min_len {
            format!("Member must have length greater than or equal to {min_len}")
        } else {
            continue;
        };
        errors.push(constraint(
            item,
            &format!("cors.{field}.{}.member", i + 1),
            &rule,
        ));
    }
}

fn constraint(value: &str, at: &str, rule: &str) -> String {
    format!("Value '{value}' at '{at}' failed to satisfy constraint: {rule}")
}

/// A CORS preflight: `OPTIONS` carrying `Origin` and `Access-Control-Request-Method`.
/// The URL answers it from its configuration without invoking the function.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The headers of the answer to a CORS preflight, from the config, without invoking: the
/// `Access-Control-*` headers when the origin and the requested method are allowed. When
/// they are not, none (the answer is still a 200, as Lambda's is: the browser is what
/// refuses, on seeing no `Access-Control-Allow-Origin`).
///
/// A `*` in `AllowMethods` or `AllowHeaders` is answered by echoing what was asked for:
/// browsers read a literal `*` as "any" only without credentials, and never as covering
/// `Authorization`.
pub fn preflight(cors: &Cors, headers: &HeaderMap) -> Vec<(String, String)> {
    let (Some(origin), Some(method)) = (
        header_str(headers, &ORIGIN),
        header_str(headers, &ACCESS_CONTROL_REQUEST_METHOD),
    ) else {
        return Vec::new();
    };
    if !origin_allowed(cors, origin) || !method_allowed(cors, method) {
        return Vec::new();
    }
    let mut out = allow_origin(cors, origin);
    let methods = if has_wildcard(&cors.allow_methods) {
        method.to_string()
    } else {
        cors.allow_methods.join(",")
    };
    out.push(pair("access-control-allow-methods", methods));
    let requested_headers = headers
        .contains_key(ACCESS_CONTROL_REQUEST_HEADERS)
        .then(|| joined(headers, &ACCESS_CONTROL_REQUEST_HEADERS));
    let allowed_headers = if has_wildcard(&cors.allow_headers) {
        requested_headers
    } else {
        (!cors.allow_headers.is_empty()).then(|| cors.allow_headers.join(","))
    };
    if let Some(h) = allowed_headers {
        out.push(pair("access-control-allow-headers", h));
    }
    if let Some(age) = cors.max_age {
        out.push(pair("access-control-max-age", age.to_string()));
    }
    if cors.allow_credentials {
        out.push(pair("access-control-allow-credentials", "true".into()));
    }
    out
}

/// The CORS headers added to an actual (non-preflight) response: the allowed origin,
/// `Access-Control-Expose-Headers`, `Access-Control-Allow-Credentials`, and `Vary: Origin`
/// when the origin is echoed (so caches keep one answer per origin). None when the
/// request has no `Origin` or the origin is not allowed. The caller merges `Vary` with
/// any the function set.
pub fn cors_headers(cors: &Cors, headers: &HeaderMap) -> Vec<(String, String)> {
    let Some(origin) = header_str(headers, &ORIGIN) else {
        return Vec::new();
    };
    if !origin_allowed(cors, origin) {
        return Vec::new();
    }
    let mut out = allow_origin(cors, origin);
    if !cors.expose_headers.is_empty() {
        out.push(pair(
            "access-control-expose-headers",
            cors.expose_headers.join(","),
        ));
    }
    if cors.allow_credentials {
        out.push(pair("access-control-allow-credentials", "true".into()));
    }
    out
}

/// `Access-Control-Allow-Origin`: `*` when any origin is allowed and credentials are off;
/// otherwise the request's own origin (a credentialed response may not say `*`), with
/// `Vary: Origin`.
fn allow_origin(cors: &Cors, origin: &str) -> Vec<(String, String)> {
    if has_wildcard(&cors.allow_origins) && !cors.allow_credentials {
        return vec![pair("access-control-allow-origin", "*".into())];
    }
    vec![
        pair("access-control-allow-origin", origin.into()),
        pair("vary", "Origin".into()),
    ]
}

fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    cors.allow_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

fn method_allowed(cors: &Cors, method: &str) -> bool {
    cors.allow_methods
        .iter()
        .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
}

fn has_wildcard(items: &[String]) -> bool {
    items.iter().any(|i| i == "*")
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn pair(name: &str, value: String) -> (String, String) {
    (name.to_string(), value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Names in any case, as a client sends them (the map lower-cases them).
    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn request<'a>(
        method: &'a Method,
        raw_path: &'a str,
        raw_query: &'a str,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> UrlRequest<'a> {
        UrlRequest {
            method,
            raw_path,
            raw_query,
            headers,
            body,
            source_ip: "203.0.113.7".into(),
            url_id: "abc123",
            domain_name: "abc123.lambda-url.us-east-1.localhost".into(),
            account_id: "123456789012",
            request_id: "req-1",
            now: datetime!(2020-03-12 19:03:58.390 UTC),
        }
    }

    fn get(pairs: &[(String, String)], name: &str) -> Option<String> {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn get_event_shape() {
        let h = headers(&[
            ("host", "abc123.lambda-url.us-east-1.localhost"),
            ("user-agent", "curl/8.0"),
            ("X-Multi", "a"),
            ("x-multi", "b"),
            ("cookie", "c1=v1; c2=v2"),
            ("cookie", "c3=v3"),
        ]);
        let ev = event(&request(
            &Method::GET,
            "/my%20path/x",
            "a=1&a=2&b=x%20y",
            &h,
            b"",
        ));
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["routeKey"], "$default");
        assert_eq!(ev["rawPath"], "/my%20path/x");
        assert_eq!(ev["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(ev["cookies"], json!(["c1=v1", "c2=v2", "c3=v3"]));
        assert_eq!(ev["headers"]["x-multi"], "a,b");
        assert_eq!(ev["headers"]["user-agent"], "curl/8.0");
        assert!(ev["headers"].get("cookie").is_none());
        assert_eq!(ev["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert!(ev.get("body").is_none());
        assert_eq!(ev["isBase64Encoded"], false);

        let ctx = &ev["requestContext"];
        assert_eq!(ctx["accountId"], "123456789012");
        assert_eq!(ctx["apiId"], "abc123");
        assert_eq!(ctx["domainName"], "abc123.lambda-url.us-east-1.localhost");
        assert_eq!(ctx["domainPrefix"], "abc123");
        assert_eq!(
            ctx["http"],
            json!({
                "method": "GET",
                "path": "/my path/x",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.0",
            })
        );
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["routeKey"], "$default");
        assert_eq!(ctx["stage"], "$default");
        assert_eq!(ctx["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(ctx["timeEpoch"], 1_584_039_838_390_i64);
    }

    #[test]
    fn optional_keys_are_left_out() {
        let h = headers(&[("host", "x")]);
        let ev = event(&request(&Method::GET, "/", "", &h, b""));
        assert!(ev.get("cookies").is_none());
        assert!(ev.get("queryStringParameters").is_none());
        assert!(ev.get("body").is_none());
        assert_eq!(ev["requestContext"]["http"]["userAgent"], "");
    }

    #[test]
    fn time_is_written_in_utc() {
        let h = HeaderMap::new();
        let method = Method::GET;
        let mut req = request(&method, "/", "", &h, b"");
        req.now = datetime!(2020-03-12 21:03:58 +2);
        assert_eq!(
            event(&req)["requestContext"]["time"],
            "12/Mar/2020:19:03:58 +0000"
        );
    }

    #[test]
    fn binary_post_body_is_base64() {
        let h = headers(&[("content-type", "application/octet-stream")]);
        let body = [0u8, 159, 146, 150];
        let ev = event(&request(&Method::POST, "/", "", &h, &body));
        assert_eq!(ev["body"], "AJ+Slg==");
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(ev["requestContext"]["http"]["method"], "POST");
    }

    #[test]
    fn json_body_is_text() {
        let h = headers(&[("content-type", "application/json; charset=utf-8")]);
        let ev = event(&request(&Method::POST, "/", "", &h, br#"{"k":"v"}"#));
        assert_eq!(ev["body"], r#"{"k":"v"}"#);
        assert_eq!(ev["isBase64Encoded"], false);
    }

    #[test]
    fn textual_content_types() {
        for ct in [
            "text/plain",
            "TEXT/HTML; charset=utf-8",
            "application/xml",
            "application/javascript",
            "application/x-www-form-urlencoded",
            "application/vnd.api+json",
            "application/atom+xml",
        ] {
            assert!(is_textual(Some(ct)), "{ct}");
        }
        for ct in [None, Some("application/octet-stream"), Some("image/png")] {
            assert!(!is_textual(ct), "{ct:?}");
        }
        // Text that is not UTF-8 goes as base64 all the same.
        let h = headers(&[("content-type", "text/plain")]);
        let ev = event(&request(&Method::POST, "/", "", &h, &[0xff, 0xfe]));
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(ev["body"], "//4=");
    }

    #[test]
    fn response_object_is_taken_apart() {
        let r = response(
            br#"{"statusCode":201,"headers":{"X-A":"1","X-N":5,"Content-Length":"3"},
                "multiValueHeaders":{"X-M":["a","b"]},
                "cookies":["a=1; Path=/","b=2"],"body":"aGVsbG8=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body, b"hello");
        assert_eq!(
            r.cookies,
            vec!["a=1; Path=/".to_string(), "b=2".to_string()]
        );
        assert_eq!(get(&r.headers, "x-a").as_deref(), Some("1"));
        assert_eq!(get(&r.headers, "x-n").as_deref(), Some("5"));
        assert_eq!(get(&r.headers, "x-m"), None);
        assert_eq!(get(&r.headers, "content-length"), None);
        assert_eq!(
            get(&r.headers, "content-type").as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn response_content_type_is_kept_when_given() {
        let r =
            response(br#"{"statusCode":200,"headers":{"Content-Type":"text/html"},"body":"<p>"}"#)
                .unwrap();
        let types: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].1, "text/html");
        assert_eq!(r.body, b"<p>");
        let r = response(br#"{"statusCode":204}"#).unwrap();
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.body.is_empty());
    }

    #[test]
    fn other_json_is_a_200_body_unchanged() {
        for payload in [
            &br#"{"message": "hi"}"#[..],
            br#""hello""#,
            b"[1,2]",
            b"42",
            b"null",
        ] {
            let r = response(payload).unwrap();
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.body, payload);
            assert_eq!(
                r.headers,
                vec![("content-type".to_string(), "application/json".to_string())]
            );
            assert!(r.cookies.is_empty());
        }
    }

    #[test]
    fn empty_payload_is_an_empty_200() {
        let r = response(b"").unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.is_empty() && r.headers.is_empty());
    }

    #[test]
    fn bad_status_codes_are_errors() {
        for payload in [
            &br#"{"statusCode":99}"#[..],
            br#"{"statusCode":600}"#,
            br#"{"statusCode":"200"}"#,
            br#"{"statusCode":200.5}"#,
            br#"{"statusCode":-1}"#,
            br#"{"statusCode":null}"#,
        ] {
            assert!(
                matches!(response(payload), Err(ResponseError::StatusCode(_))),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn unusable_results_are_errors() {
        assert!(matches!(
            response(b"not json"),
            Err(ResponseError::NotJson(_))
        ));
        assert!(matches!(
            response(br#"{"statusCode":200,"headers":{"x":{"a":1}}}"#),
            Err(ResponseError::Headers(_))
        ));
        assert!(matches!(
            response(br#"{"statusCode":200,"headers":{"bad name":"v"}}"#),
            Err(ResponseError::Headers(_))
        ));
        assert!(matches!(
            response(br#"{"statusCode":200,"cookies":"a=1"}"#),
            Err(ResponseError::Cookies(_))
        ));
        assert!(matches!(
            response(br#"{"statusCode":200,"body":"%%%","isBase64Encoded":true}"#),
            Err(ResponseError::Body(_))
        ));
        assert!(matches!(
            response(br#"{"statusCode":200,"body":{"a":1}}"#),
            Err(ResponseError::Body(_))
        ));
    }

    fn cors() -> Cors {
        Cors {
            allow_origins: vec!["https://example.com".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-custom".into(), "content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            max_age: Some(300),
            allow_credentials: false,
        }
    }

    #[test]
    fn preflight_allowed() {
        let h = headers(&[
            ("origin", "https://EXAMPLE.com"),
            ("access-control-request-method", "post"),
            ("access-control-request-headers", "x-custom"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &h));
        let out = preflight(&cors(), &h);
        assert_eq!(
            get(&out, "access-control-allow-origin").as_deref(),
            Some("https://EXAMPLE.com")
        );
        assert_eq!(get(&out, "vary").as_deref(), Some("Origin"));
        assert_eq!(
            get(&out, "access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(
            get(&out, "access-control-allow-headers").as_deref(),
            Some("x-custom,content-type")
        );
        assert_eq!(get(&out, "access-control-max-age").as_deref(), Some("300"));
        assert_eq!(get(&out, "access-control-allow-credentials"), None);
    }

    #[test]
    fn preflight_denied() {
        let other_origin = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(preflight(&cors(), &other_origin).is_empty());
        let other_method = headers(&[
            ("origin", "https://example.com"),
            ("access-control-request-method", "DELETE"),
        ]);
        assert!(preflight(&cors(), &other_method).is_empty());
        assert!(preflight(&Cors::default(), &other_method).is_empty());
    }

    #[test]
    fn preflight_wildcards() {
        let c = Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            ..Cors::default()
        };
        let h = headers(&[
            ("origin", "https://any.example"),
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "authorization,x-a"),
        ]);
        let out = preflight(&c, &h);
        assert_eq!(
            get(&out, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        assert_eq!(get(&out, "vary"), None);
        assert_eq!(
            get(&out, "access-control-allow-methods").as_deref(),
            Some("PATCH")
        );
        assert_eq!(
            get(&out, "access-control-allow-headers").as_deref(),
            Some("authorization,x-a")
        );
        assert_eq!(get(&out, "access-control-max-age"), None);
    }

    #[test]
    fn is_preflight_needs_options_origin_and_method() {
        let full = headers(&[
            ("origin", "https://example.com"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &full));
        assert!(!is_preflight(&Method::GET, &full));
        let no_method = headers(&[("origin", "https://example.com")]);
        assert!(!is_preflight(&Method::OPTIONS, &no_method));
    }

    #[test]
    fn cors_headers_with_credentials_echo_the_origin() {
        let c = Cors {
            allow_origins: vec!["*".into()],
            expose_headers: vec!["x-request-id".into(), "x-b".into()],
            allow_credentials: true,
            ..Cors::default()
        };
        let h = headers(&[("origin", "https://app.example")]);
        let out = cors_headers(&c, &h);
        assert_eq!(
            get(&out, "access-control-allow-origin").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(get(&out, "vary").as_deref(), Some("Origin"));
        assert_eq!(
            get(&out, "access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(
            get(&out, "access-control-expose-headers").as_deref(),
            Some("x-request-id,x-b")
        );
    }

    #[test]
    fn cors_headers_without_credentials_or_origin() {
        let c = Cors {
            allow_origins: vec!["*".into()],
            ..Cors::default()
        };
        let h = headers(&[("origin", "https://app.example")]);
        assert_eq!(
            cors_headers(&c, &h),
            vec![pair("access-control-allow-origin", "*".into())]
        );
        assert!(cors_headers(&c, &HeaderMap::new()).is_empty());
        let denied = headers(&[("origin", "https://evil.example")]);
        assert!(cors_headers(&cors(), &denied).is_empty());
    }

    #[test]
    fn cors_config_serde_uses_lambda_names() {
        let c: Cors = serde_json::from_value(json!({
            "AllowOrigins": ["*"],
            "AllowMethods": ["GET"],
            "AllowHeaders": null,
            "MaxAge": 10,
            "AllowCredentials": true,
        }))
        .unwrap();
        assert_eq!(c.allow_origins, vec!["*".to_string()]);
        assert!(c.allow_headers.is_empty());
        assert_eq!(c.max_age, Some(10));
        assert!(c.allow_credentials);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({
                "AllowOrigins": ["*"],
                "AllowMethods": ["GET"],
                "MaxAge": 10,
                "AllowCredentials": true,
            })
        );
        let empty: Cors = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, Cors::default());
    }

    #[test]
    fn cors_limits() {
        assert_eq!(validate_cors(&cors()), Ok(()));
        assert_eq!(validate_cors(&Cors::default()), Ok(()));

        let c = Cors {
            max_age: Some(86_401),
            ..cors()
        };
        assert_eq!(
            validate_cors(&c).unwrap_err(),
            "1 validation error detected: Value '86401' at 'cors.maxAge' failed to satisfy constraint: Member must have value less than or equal to 86400"
        );
        assert_eq!(
            validate_cors(&Cors {
                max_age: Some(86_400),
                ..cors()
            }),
            Ok(())
        );

        let c = Cors {
            allow_methods: vec!["GET".into(), "get".into(), "OPTIONS".into()],
            ..cors()
        };
        let err = validate_cors(&c).unwrap_err();
        assert!(err.starts_with("2 validation errors detected: "), "{err}");
        assert!(
            err.contains("Value 'get' at 'cors.allowMethods.2.member'"),
            "{err}"
        );
        assert!(
            err.contains("Value 'OPTIONS' at 'cors.allowMethods.3.member'"),
            "{err}"
        );

        let c = Cors {
            allow_origins: (0..101).map(|i| format!("https://{i}.example")).collect(),
            ..Cors::default()
        };
        let err = validate_cors(&c).unwrap_err();
        assert!(err.contains("at 'cors.allowOrigins' failed"), "{err}");
        assert!(err.contains("less than or equal to 100"), "{err}");

        let c = Cors {
            allow_origins: vec!["x".repeat(254)],
            allow_headers: vec!["h".repeat(1025)],
            expose_headers: vec![String::new()],
            ..Cors::default()
        };
        let err = validate_cors(&c).unwrap_err();
        assert!(err.starts_with("2 validation errors detected: "), "{err}");
        assert!(err.contains("'cors.allowOrigins.1.member'"), "{err}");
        assert!(err.contains("'cors.allowHeaders.1.member'"), "{err}");

        let c = Cors {
            allow_methods: ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"]
                .map(String::from)
                .to_vec(),
            ..Cors::default()
        };
        let err = validate_cors(&c).unwrap_err();
        assert!(err.contains("at 'cors.allowMethods' failed"), "{err}");
    }

    #[test]
    fn a_streamed_prelude_follows_the_structured_rules() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let head = prelude(&obj(json!({"headers": {"x-a": "1", "content-length": "9"},
                                       "cookies": ["s=1"]})))
        .unwrap();
        assert_eq!(head.status, StatusCode::OK, "200 by default");
        assert_eq!(
            head.headers,
            vec![("x-a".to_string(), "1".to_string())],
            "framing dropped"
        );
        assert_eq!(head.cookies, vec!["s=1".to_string()]);
        assert!(prelude(&obj(json!({"statusCode": 42}))).is_err());
        assert!(prelude(&obj(json!({"cookies": "s=1"}))).is_err());
        assert_eq!(
            prelude(&obj(json!({"statusCode": 202}))).unwrap().status,
            202
        );
    }
}

//! AWS Signature Version 4 verification.
//!
//! The gateway recomputes the signature the client made over the request it received
//! and compares in constant time. The canonical request follows AWS's rules for
//! non-S3 services (as botocore and the SDKs sign): the already percent-encoded path is
//! encoded once more, query parameters are decoded, re-encoded and sorted, signed
//! headers are lower-cased with whitespace folded, and the payload hash is the SHA-256
//! of the body (or `x-amz-content-sha256` when the client sent it). Tested against AWS's
//! published test vectors below and against botocore in the end-to-end suite.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Everything except RFC 3986 unreserved characters.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, but keeping `/` (for paths).
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// How far a request's `X-Amz-Date` may be from the gateway's clock.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a request's signature was not accepted. Each maps to a Lambda 403 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No or malformed `Authorization` header (`MissingAuthenticationTokenException`-like).
    #[error("Missing Authentication Token")]
    Missing,
    #[error("Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters, and algorithm AWS4-HMAC-SHA256: {0}")]
    Malformed(String),
    /// `UnrecognizedClientException`.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// `InvalidSignatureException`.
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    /// `InvalidSignatureException`.
    #[error(
        "Signature expired: {0} is now earlier or later than 15 minutes from the server's time."
    )]
    Expired(String),
    /// `InvalidSignatureException`.
    #[error("Credential should be scoped to a valid region or service: {0}")]
    Scope(String),
    /// `InvalidSignatureException`: the Lambda API signs its payloads.
    #[error("UNSIGNED-PAYLOAD is not accepted: this API requires the payload's SHA-256 in the signature")]
    UnsignedPayload,
    /// `InvalidSignatureException`: the body is not the one that was signed.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadMismatch,
}

impl SigError {
    /// The Lambda error name for the `x-amzn-ErrorType` header.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigError::Missing => "MissingAuthenticationTokenException",
            SigError::UnknownKey => "UnrecognizedClientException",
            SigError::Malformed(_) => "IncompleteSignatureException",
            SigError::Mismatch
            | SigError::Expired(_)
            | SigError::Scope(_)
            | SigError::UnsignedPayload
            | SigError::PayloadMismatch => "InvalidSignatureException",
        }
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=…`.
pub fn parse_authorization(header: &str) -> Result<Authorization, SigError> {
    let rest = header
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| SigError::Malformed("unsupported algorithm".into()))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| SigError::Malformed(part.trim().into()))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(SigError::Malformed(
            header.split(' ').next().unwrap_or("").into(),
        ));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(SigError::Malformed(format!("credential '{credential}'")));
    };
    Ok(Authorization {
        access_key_id: akid.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed.split(';').map(str::to_string).collect(),
        signature: signature.to_string(),
    })
}

/// The parts of a request that its signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as received on the wire (still percent-encoded).
    pub raw_path: &'a str,
    /// The query string as received (without `?`).
    pub raw_query: &'a str,
    /// All headers, any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The `x-amz-content-sha256` a client may send instead of the payload's hash.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The payload hash the client declared in `x-amz-content-sha256`, if any. The signature
/// then covers this value, so it must be checked against the body
/// ([`check_payload`]); `UNSIGNED-PAYLOAD` (a signature over no body at all) is refused.
pub fn declared_payload_hash(headers: &[(String, String)]) -> Result<Option<&str>, SigError> {
    let Some((_, v)) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
    else {
        return Ok(None);
    };
    if v == UNSIGNED_PAYLOAD {
        return Err(SigError::UnsignedPayload);
    }
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigError::Malformed(
            "x-amz-content-sha256 must be the hex SHA-256 of the payload".into(),
        ));
    }
    Ok(Some(v))
}

/// Whether `body` is the payload whose hash was declared (and signed).
pub fn check_payload(body: &[u8], declared: &str) -> Result<(), SigError> {
    if sha256_hex(body).eq_ignore_ascii_case(declared) {
        Ok(())
    } else {
        Err(SigError::PayloadMismatch)
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Removes `.` and `..` segments and collapses repeated slashes, as botocore does.
fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if path.ends_with('/') && p != "/" {
        p.push('/');
    }
    p
}

fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                utf8_percent_encode(&dec(k), STRICT).to_string(),
                utf8_percent_encode(&dec(v), STRICT).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn fold_ws(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request (step 1 of SigV4).
pub fn canonical_request(req: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let path = utf8_percent_encode(&normalize_path(req.raw_path), PATH).to_string();
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| fold_ws(v))
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| sha256_hex(req.body));
    format!(
        "{}\n{path}\n{}\n{headers}\n{}\n{payload}",
        req.method,
        canonical_query(req.raw_query),
        signed_headers.join(";")
    )
}

/// Computes the signature of `req` with `secret`, for the scope in `auth` at `amz_date`.
pub fn signature(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    amz_date: &str,
    secret: &str,
) -> String {
    let creq = canonical_request(req, &auth.signed_headers);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(creq.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, to_sign.as_bytes()))
}

/// Who signs, for which scope: what [`sign_request`] needs besides the request.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// Temporary credentials' token, sent and signed as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    /// `lambda`, `logs`, …
    pub service: &'a str,
}

/// Signs a request as the AWS SDKs do (for Nimbus's own client): returns the
/// `X-Amz-Date` and `Authorization` values for a request whose signed headers are
/// `host` and `x-amz-date`.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    host: &str,
    body: &[u8],
    (access_key_id, secret): (&str, &str),
    region: &str,
    now_unix: i64,
) -> (String, String) {
    let params = SigningParams {
        access_key_id,
        secret_access_key: secret,
        session_token: None,
        region,
        service: "lambda",
    };
    let signed = sign_request(
        method,
        raw_path,
        raw_query,
        host,
        &[],
        body,
        &params,
        now_unix,
    );
    (signed.amz_date, signed.authorization)
}

/// The headers a signed request must carry.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `X-Amz-Date`.
    pub amz_date: String,
    /// `Authorization`.
    pub authorization: String,
    /// `X-Amz-Security-Token`, when the credentials have a session token.
    pub security_token: Option<String>,
}

/// Signs `host`, `x-amz-date`, `x-amz-security-token` (if any) and `extra_headers`
/// (lower-case names, e.g. `x-amz-target`), for any service.
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    host: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    params: &SigningParams<'_>,
    now_unix: i64,
) -> Signed {
    let when = time::OffsetDateTime::from_unix_timestamp(now_unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let amz_date = when
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let mut headers = vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(t) = params.session_token {
        headers.push(("x-amz-security-token".to_string(), t.to_string()));
    }
    headers.extend(
        extra_headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
    );
    headers.sort();
    let mut auth = Authorization {
        access_key_id: params.access_key_id.to_string(),
        date: amz_date[..8.min(amz_date.len())].to_string(),
        region: params.region.to_string(),
        service: params.service.to_string(),
        signed_headers: headers.iter().map(|(k, _)| k.clone()).collect(),
        signature: String::new(),
    };
    let req = SignedRequest {
        method,
        raw_path,
        raw_query,
        headers: &headers,
        body,
    };
    auth.signature = signature(&req, &auth, &amz_date, params.secret_access_key);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        auth.access_key_id,
        auth.date,
        auth.region,
        auth.service,
        auth.signed_headers.join(";"),
        auth.signature
    );
    Signed {
        amz_date,
        authorization,
        security_token: params.session_token.map(str::to_owned),
    }
}

/// Constant-time string comparison.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Verifies a request's signature. `now_unix` is the gateway's clock.
pub fn verify(
    req: &SignedRequest<'_>,
    auth: &Authorization,
    secret: &str,
    now_unix: i64,
) -> Result<(), SigError> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let amz_date =
        header("x-amz-date").ok_or_else(|| SigError::Malformed("missing X-Amz-Date".into()))?;
    let when = time::PrimitiveDateTime::parse(
        amz_date,
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| SigError::Malformed(format!("X-Amz-Date '{amz_date}'")))?
    .assume_utc()
    .unix_timestamp();
    if (when - now_unix).abs() > MAX_SKEW_SECS {
        return Err(SigError::Expired(amz_date.to_string()));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(SigError::Scope(format!(
            "date {} does not match X-Amz-Date",
            auth.date
        )));
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Malformed(
            "SignedHeaders must include host".into(),
        ));
    }
    if same(&signature(req, auth, amz_date, secret), &auth.signature) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's published SigV4 test suite (aws-sig-v4-test-suite): credentials, scope and
    // expected signatures of the `get-vanilla`, `get-vanilla-query-order-key-case` and
    // `post-x-www-form-urlencoded` cases.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn auth(signed: &str, sig: &str) -> Authorization {
        parse_authorization(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}"
        ))
        .unwrap()
    }

    fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        h
    }

    const NOW: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z

    #[test]
    fn what_sign_makes_verify_accepts() {
        let body = br#"{"a":1}"#;
        let (date, header) = sign(
            "POST",
            "/2015-03-31/functions/f/invocations",
            "Qualifier=live",
            "127.0.0.1:9000",
            body,
            ("AKID", SECRET),
            "us-east-1",
            NOW,
        );
        assert_eq!(date, "20150830T123600Z");
        let h = vec![
            ("Host".to_string(), "127.0.0.1:9000".to_string()),
            ("X-Amz-Date".to_string(), date),
            ("Content-Type".to_string(), "application/json".to_string()),
        ];
        let mut req = SignedRequest {
            method: "POST",
            raw_path: "/2015-03-31/functions/f/invocations",
            raw_query: "Qualifier=live",
            headers: &h,
            body,
        };
        let auth = parse_authorization(&header).unwrap();
        assert_eq!(verify(&req, &auth, SECRET, NOW), Ok(()));
        req.body = b"{}";
        assert_eq!(verify(&req, &auth, SECRET, NOW), Err(SigError::Mismatch));
    }

    #[test]
    fn signing_for_logs_with_a_session_token_and_target() {
        let body = br#"{"logGroupName":"/aws/lambda/f"}"#;
        let params = SigningParams {
            access_key_id: "AKID",
            secret_access_key: SECRET,
            session_token: Some("TOKEN"),
            region: "us-east-1",
            service: "logs",
        };
        let target = "Logs_20140328.FilterLogEvents";
        let signed = sign_request(
            "POST",
            "/",
            "",
            "127.0.0.1:9000",
            &[("X-Amz-Target", target)],
            body,
            &params,
            NOW,
        );
        let auth = parse_authorization(&signed.authorization).unwrap();
        assert_eq!(auth.service, "logs");
        assert_eq!(
            auth.signed_headers,
            ["host", "x-amz-date", "x-amz-security-token", "x-amz-target"]
        );
        let mut h = vec![
            ("Host".to_string(), "127.0.0.1:9000".to_string()),
            ("X-Amz-Date".to_string(), signed.amz_date.clone()),
            ("X-Amz-Security-Token".to_string(), "TOKEN".to_string()),
            ("X-Amz-Target".to_string(), target.to_string()),
        ];
        let req = SignedRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body,
        };
        assert_eq!(verify(&req, &auth, SECRET, NOW), Ok(()));
        // The target is covered by the signature.
        h[3].1 = "Logs_20140328.DescribeLogGroups".into();
        let req = SignedRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body,
        };
        assert_eq!(verify(&req, &auth, SECRET, NOW), Err(SigError::Mismatch));
    }

    #[test]
    fn a_declared_payload_hash_must_be_the_bodys() {
        let body = br#"{"a":1}"#;
        let good = sha256_hex(body);
        let h = vec![("X-Amz-Content-Sha256".to_string(), good.clone())];
        assert_eq!(declared_payload_hash(&h), Ok(Some(good.as_str())));
        assert_eq!(check_payload(body, &good), Ok(()));
        assert_eq!(check_payload(b"{}", &good), Err(SigError::PayloadMismatch));
        assert_eq!(declared_payload_hash(&[]), Ok(None));
        let unsigned = vec![(
            "x-amz-content-sha256".to_string(),
            UNSIGNED_PAYLOAD.to_string(),
        )];
        assert_eq!(
            declared_payload_hash(&unsigned),
            Err(SigError::UnsignedPayload)
        );
        let junk = vec![("x-amz-content-sha256".to_string(), "abc".to_string())];
        assert!(matches!(
            declared_payload_hash(&junk),
            Err(SigError::Malformed(_))
        ));
        assert_eq!(
            SigError::PayloadMismatch.error_type(),
            "InvalidSignatureException"
        );
        assert_eq!(
            SigError::UnsignedPayload.error_type(),
            "InvalidSignatureException"
        );
    }

    #[test]
    fn get_vanilla() {
        let h = headers(&[]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        let a = auth(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        assert_eq!(verify(&req, &a, SECRET, NOW), Ok(()));
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let h = headers(&[]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Param2=value2&Param1=value1",
            headers: &h,
            body: b"",
        };
        let a = auth(
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        assert_eq!(verify(&req, &a, SECRET, NOW), Ok(()));
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let h = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
        let req = SignedRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: b"Param1=value1",
        };
        let a = auth(
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
        assert_eq!(verify(&req, &a, SECRET, NOW), Ok(()));
    }

    #[test]
    fn tampering_expiry_and_scope_are_refused() {
        let h = headers(&[]);
        let a = auth(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        let other_path = SignedRequest {
            method: "GET",
            raw_path: "/x",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        assert_eq!(
            verify(&other_path, &a, SECRET, NOW),
            Err(SigError::Mismatch)
        );
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        assert_eq!(
            verify(&req, &a, "wrong-secret", NOW),
            Err(SigError::Mismatch)
        );
        assert!(matches!(
            verify(&req, &a, SECRET, NOW + 16 * 60),
            Err(SigError::Expired(_))
        ));
        let no_host = auth("x-amz-date", "00");
        assert!(matches!(
            verify(&req, &no_host, SECRET, NOW),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(parse_authorization("Basic abc").is_err());
        assert!(parse_authorization(
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=x"
        )
        .is_err());
        assert!(parse_authorization("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=x").is_err());
    }

    #[test]
    fn paths_are_double_encoded_for_non_s3_services() {
        let h = headers(&[]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/2017-03-31/tags/arn%3Aaws%3Alambda",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        let creq = canonical_request(&req, &["host".to_string()]);
        assert!(
            creq.contains("/2017-03-31/tags/arn%253Aaws%253Alambda\n"),
            "{creq}"
        );
    }
}

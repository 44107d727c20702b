//! Function URLs in `RESPONSE_STREAM` mode: the function's bytes go out as chunked HTTP
//! as it writes them.
//!
//! With `awslambda.HttpResponseStream.from`, a function first writes a JSON prelude
//! (`statusCode`, `headers`, `cookies`) and eight NUL bytes; the gateway holds back only
//! those first bytes, to learn the status and headers, and passes everything after on
//! unbuffered. Without a prelude the whole output is the body of a 200. A function that
//! fails before writing anything gets Lambda's 502; one that fails mid-stream can no
//! longer change the status, so its response is cut off (the client sees an incomplete
//! chunked body, never a clean end).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};

use crate::core::{ApiError, StreamEvent, StreamedInvoke};

/// The prelude's end.
const DELIMITER: &[u8] = &[0; 8];
/// Bytes held back looking for a prelude, at most: past this it is body.
const MAX_PRELUDE_BYTES: usize = 64 * 1024;

/// What the first bytes of a streamed response say about a prelude.
#[derive(Debug, PartialEq)]
pub enum Prelude {
    /// A prelude, and where the body starts.
    Found(serde_json::Value, usize),
    /// No prelude: every byte is body.
    Absent,
    /// Not known yet: more bytes are needed.
    Undecided,
}

/// Reads the prelude from the first bytes of a streamed response (`complete`: no more
/// bytes will come).
pub fn prelude(buf: &[u8], complete: bool) -> Prelude {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace());
    match start {
        Some(i) if buf[i] != b'{' => return Prelude::Absent,
        None if complete => return Prelude::Absent,
        _ => {}
    }
    if let Some(at) = buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) {
        return match serde_json::from_slice::<serde_json::Value>(&buf[..at]) {
            Ok(meta) if meta.is_object() => Prelude::Found(meta, at + DELIMITER.len()),
            _ => Prelude::Absent,
        };
    }
    if complete || buf.len() > MAX_PRELUDE_BYTES {
        Prelude::Absent
    } else {
        Prelude::Undecided
    }
}

/// The response's head from a prelude, by the rules of a structured result (a bare 200
/// without one); a prelude that breaks them is unusable, as a buffered result would be.
fn head(meta: Option<&serde_json::Value>) -> Result<Response, ApiError> {
    let Some(meta) = meta.and_then(serde_json::Value::as_object) else {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(r);
    };
    super::payload::prelude(meta)
        .map(super::http_response)
        .map_err(|e| ApiError::service(format!("the function's response prelude is unusable: {e}")))
}

/// A mid-stream failure: the body is cut off.
#[derive(Debug, thiserror::Error)]
#[error("the function failed mid-stream")]
struct CutOff;

/// The URL's response for a streamed invocation: the head once the prelude is known,
/// then the body as the function writes it. `Err` is the error to answer instead, when
/// the invocation failed before its first byte.
pub async fn respond(invoked: StreamedInvoke) -> Result<Response, ApiError> {
    let mut events = invoked.events;
    let mut first = BytesMut::new();
    // Hold back the first bytes until the prelude is known.
    let (meta, rest, done) = loop {
        match events.recv().await {
            Some(StreamEvent::Chunk(chunk)) => {
                first.extend_from_slice(&chunk);
                match prelude(&first, false) {
                    Prelude::Undecided => continue,
                    Prelude::Absent => break (None, first.freeze(), None),
                    Prelude::Found(meta, at) => {
                        break (Some(meta), first.freeze().slice(at..), None)
                    }
                }
            }
            Some(StreamEvent::Done(done)) => {
                let result = done?;
                if result.function_error.is_some() && first.is_empty() {
                    return Err(ApiError::service("the function failed"));
                }
                // A function that answered in one piece: its payload is the output.
                first.extend_from_slice(&result.payload);
                let failed = result.function_error.is_some();
                break match prelude(&first, true) {
                    Prelude::Found(meta, at) => {
                        (Some(meta), first.freeze().slice(at..), Some(failed))
                    }
                    _ => (None, first.freeze(), Some(failed)),
                };
            }
            None => return Err(ApiError::service("the invocation ended without an answer")),
        }
    };
    let mut response = head(meta.as_ref())?;
    let head_chunk = futures::stream::iter((!rest.is_empty()).then_some(Ok::<_, CutOff>(rest)));
    let body: futures::stream::BoxStream<'static, Result<Bytes, CutOff>> = match done {
        Some(false) => futures::StreamExt::boxed(head_chunk),
        Some(true) => futures::StreamExt::boxed(futures::StreamExt::chain(
            head_chunk,
            futures::stream::iter([Err(CutOff)]),
        )),
        None => {
            let tail = futures::stream::unfold(Some(events), |events| async move {
                let mut events = events?;
                match events.recv().await {
                    Some(StreamEvent::Chunk(chunk)) => Some((Ok(chunk), Some(events))),
                    Some(StreamEvent::Done(Ok(r))) if r.function_error.is_none() => {
                        (!r.payload.is_empty()).then_some((Ok(r.payload), None))
                    }
                    Some(StreamEvent::Done(_)) | None => Some((Err(CutOff), None)),
                }
            });
            futures::StreamExt::boxed(futures::StreamExt::chain(head_chunk, tail))
        }
    };
    *response.body_mut() = axum::body::Body::from_stream(body);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preludes_are_recognised() {
        let p = |b: &[u8], c| prelude(b, c);
        assert_eq!(p(b"hello", false), Prelude::Absent);
        assert_eq!(p(b"", false), Prelude::Undecided);
        assert_eq!(p(b"", true), Prelude::Absent);
        assert_eq!(p(b"{\"statusCode\":2", false), Prelude::Undecided);
        assert_eq!(p(b"{\"statusCode\":2", true), Prelude::Absent);
        let mut full = b"{\"statusCode\":201}".to_vec();
        full.extend_from_slice(&[0; 8]);
        full.extend_from_slice(b"body");
        match p(&full, false) {
            Prelude::Found(meta, at) => {
                assert_eq!(meta["statusCode"], 201);
                assert_eq!(&full[at..], b"body");
            }
            other => panic!("{other:?}"),
        }
        // JSON output that is not a prelude stays body.
        let mut not_object = b"[1]".to_vec();
        not_object.extend_from_slice(&[0; 8]);
        assert_eq!(p(b"[1]", true), Prelude::Absent);
        assert_eq!(p(&not_object, false), Prelude::Absent);
        // A long `{` body without a delimiter is not held back forever.
        let long = vec![b'{'; MAX_PRELUDE_BYTES + 1];
        assert_eq!(p(&long, false), Prelude::Absent);
    }
}

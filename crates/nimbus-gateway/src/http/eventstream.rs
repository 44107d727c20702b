//! AWS event-stream framing (`application/vnd.amazon.eventstream`), the body of an
//! `InvokeWithResponseStream` response. The SDKs decode that body as a sequence of framed
//! messages, so the gateway must frame bytes exactly as Lambda does: `PayloadChunk` events
//! carrying the function's output as it arrives, then one `InvokeComplete` event.
//!
//! A message is a prelude (total length, headers length, CRC32 of those 8 bytes), the
//! headers, the payload, and a CRC32 of everything before it; all integers big-endian.
//! Pure: the streaming handler writes these frames to the wire.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

/// The media type of a response body made of these messages.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The most of the function's output one `PayloadChunk` carries: SDK decoders refuse
/// messages over 16 MiB, so larger writes are split (see [`payload_chunks`]).
pub const MAX_CHUNK: usize = 1024 * 1024;

/// Total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// The trailing message CRC.
const CRC_LEN: usize = 4;
/// A message with no headers and no payload.
const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + CRC_LEN;

/// Header value types of the wire format (only `STRING` is ever written here).
const TYPE_TRUE: u8 = 0;
const TYPE_FALSE: u8 = 1;
const TYPE_BYTE: u8 = 2;
const TYPE_SHORT: u8 = 3;
const TYPE_INT: u8 = 4;
const TYPE_LONG: u8 = 5;
const TYPE_BYTES: u8 = 6;
const TYPE_STRING: u8 = 7;
const TYPE_TIMESTAMP: u8 = 8;
const TYPE_UUID: u8 = 9;

/// Why a buffer does not start with a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed: a streaming reader keeps what it has and reads on.
    #[error("incomplete message: {needed} bytes needed, {available} available")]
    Incomplete { needed: usize, available: usize },
    #[error("prelude CRC mismatch: message says {expected:#010x}, computed {actual:#010x}")]
    PreludeCrc { expected: u32, actual: u32 },
    #[error("message CRC mismatch: message says {expected:#010x}, computed {actual:#010x}")]
    MessageCrc { expected: u32, actual: u32 },
    /// The lengths in the prelude cannot describe a message.
    #[error("invalid lengths: total {total}, headers {headers}")]
    Lengths { total: usize, headers: usize },
    #[error("invalid header: {0}")]
    Header(String),
}

/// Frames one message. Every header is written as a string header, which is all Lambda's
/// events use.
///
/// # Panics
/// On a header name over 255 bytes or a value over 65,535 bytes, or a message over 4 GiB:
/// the wire format cannot express them, and the gateway only writes its own fixed headers.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = PRELUDE_LEN + headers_len + payload.len() + CRC_LEN;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32(u32::try_from(total).expect("event-stream message over 4 GiB"));
    buf.put_u32(u32::try_from(headers_len).expect("event-stream headers over 4 GiB"));
    let prelude_crc = crc32fast::hash(&buf[..8]);
    buf.put_u32(prelude_crc);
    for (name, value) in headers {
        put_string_header(&mut buf, name, value);
    }
    buf.put_slice(payload);
    let message_crc = crc32fast::hash(&buf);
    buf.put_u32(message_crc);
    buf.freeze()
}

/// Name length (u8), name, type 7, value length (u16), value.
fn put_string_header(buf: &mut BytesMut, name: &str, value: &str) {
    let name_len = u8::try_from(name.len()).expect("event-stream header name over 255 bytes");
    let value_len =
        u16::try_from(value.len()).expect("event-stream header value over 65,535 bytes");
    buf.put_u8(name_len);
    buf.put_slice(name.as_bytes());
    buf.put_u8(TYPE_STRING);
    buf.put_u16(value_len);
    buf.put_slice(value.as_bytes());
}

/// A `PayloadChunk` event: a piece of the function's streamed output, as raw bytes.
pub fn payload_chunk(chunk: &[u8]) -> Bytes {
    message(
        &[
            (":event-type", "PayloadChunk"),
            (":content-type", "application/octet-stream"),
            (":message-type", "event"),
        ],
        chunk,
    )
}

/// `PayloadChunk` events for a write of any size, at most [`MAX_CHUNK`] bytes each (none
/// for an empty write: an empty chunk tells the client nothing).
pub fn payload_chunks(data: &[u8]) -> impl Iterator<Item = Bytes> + '_ {
    data.chunks(MAX_CHUNK).map(payload_chunk)
}

/// The `InvokeComplete` event that ends the stream: `ErrorCode` and `ErrorDetails` when
/// the function failed mid-stream, `LogResult` (base64 log tail) when the caller asked for
/// it. Absent fields are left out of the JSON rather than written as null, as Lambda does.
pub fn invoke_complete(
    error_code: Option<&str>,
    error_details: Option<&str>,
    log_result: Option<&str>,
) -> Bytes {
    let mut body = Map::new();
    let fields = [
        ("ErrorCode", error_code),
        ("ErrorDetails", error_details),
        ("LogResult", log_result),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            body.insert(key.into(), Value::String(v.into()));
        }
    }
    let payload = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    message(
        &[
            (":event-type", "InvokeComplete"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &payload,
    )
}

/// One decoded message: its headers, its payload, and how many bytes it took.
pub type Decoded = (Vec<(String, String)>, Vec<u8>, usize);

/// For tests and clients: parses one message from the front of `buf`, returning
/// (headers, payload, bytes consumed), checking both CRCs. Header values of types other
/// than string are rendered as text (booleans and integers in decimal, byte arrays in
/// base64, timestamps as epoch milliseconds, UUIDs hyphenated). Sizes are not capped:
/// the format's limits bind services, and clients must not enforce them.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    need(buf, PRELUDE_LEN)?;
    let total = be_u32(&buf[0..4]) as usize;
    let headers_len = be_u32(&buf[4..8]) as usize;
    check_crc(&buf[..8], be_u32(&buf[8..12]), true)?;
    if total < MIN_MESSAGE_LEN || headers_len > total - MIN_MESSAGE_LEN {
        return Err(DecodeError::Lengths {
            total,
            headers: headers_len,
        });
    }
    need(buf, total)?;
    check_crc(
        &buf[..total - CRC_LEN],
        be_u32(&buf[total - CRC_LEN..total]),
        false,
    )?;
    let headers_end = PRELUDE_LEN + headers_len;
    let headers = decode_headers(&buf[PRELUDE_LEN..headers_end])?;
    let payload = buf[headers_end..total - CRC_LEN].to_vec();
    Ok((headers, payload, total))
}

fn need(buf: &[u8], needed: usize) -> Result<(), DecodeError> {
    if buf.len() < needed {
        return Err(DecodeError::Incomplete {
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn check_crc(covered: &[u8], expected: u32, prelude: bool) -> Result<(), DecodeError> {
    let actual = crc32fast::hash(covered);
    match (actual == expected, prelude) {
        (true, _) => Ok(()),
        (false, true) => Err(DecodeError::PreludeCrc { expected, actual }),
        (false, false) => Err(DecodeError::MessageCrc { expected, actual }),
    }
}

/// The headers section, one header after another until it is used up.
fn decode_headers(mut buf: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (name, rest) = take_prefixed(buf, 1).map_err(DecodeError::Header)?;
        let name = utf8(name, "name")?;
        let (&value_type, rest) = rest
            .split_first()
            .ok_or_else(|| DecodeError::Header(format!("{name}: missing value type")))?;
        let (value, rest) = decode_value(value_type, rest)
            .map_err(|e| DecodeError::Header(format!("{name}: {e}")))?;
        out.push((name, value));
        buf = rest;
    }
    Ok(out)
}

/// One header value as text, and what follows it.
fn decode_value(value_type: u8, buf: &[u8]) -> Result<(String, &[u8]), String> {
    match value_type {
        TYPE_TRUE => Ok(("true".into(), buf)),
        TYPE_FALSE => Ok(("false".into(), buf)),
        TYPE_BYTE | TYPE_SHORT | TYPE_INT | TYPE_LONG | TYPE_TIMESTAMP => {
            let width = match value_type {
                TYPE_BYTE => 1,
                TYPE_SHORT => 2,
                TYPE_INT => 4,
                _ => 8,
            };
            let (v, rest) = split_fixed(buf, width)?;
            Ok((signed(v).to_string(), rest))
        }
        TYPE_BYTES => {
            let (v, rest) = take_prefixed(buf, 2)?;
            Ok((STANDARD.encode(v), rest))
        }
        TYPE_STRING => {
            let (v, rest) = take_prefixed(buf, 2)?;
            let v = std::str::from_utf8(v).map_err(|_| "string value is not UTF-8".to_string())?;
            Ok((v.to_string(), rest))
        }
        TYPE_UUID => {
            let (v, rest) = split_fixed(buf, 16)?;
            let mut raw = [0u8; 16];
            raw.copy_from_slice(v);
            Ok((uuid::Uuid::from_bytes(raw).hyphenated().to_string(), rest))
        }
        other => Err(format!("unknown value type {other}")),
    }
}

/// The first `n` bytes and the rest.
fn split_fixed(buf: &[u8], n: usize) -> Result<(&[u8], &[u8]), String> {
    if buf.len() < n {
        return Err(format!("value truncated ({} of {n} bytes)", buf.len()));
    }
    Ok(buf.split_at(n))
}

/// A big-endian signed integer of 1 to 8 bytes, sign-extended from its own width.
fn signed(b: &[u8]) -> i64 {
    let mut wide = [0u8; 8];
    wide[8 - b.len()..].copy_from_slice(b);
    let shift = 64 - 8 * b.len() as u32;
    (i64::from_be_bytes(wide) << shift) >> shift
}

/// A length-prefixed field (`len_bytes` of 1 or 2, big-endian) and what follows it.
fn take_prefixed(buf: &[u8], len_bytes: usize) -> Result<(&[u8], &[u8]), String> {
    if buf.len() < len_bytes {
        return Err("length prefix truncated".into());
    }
    let (prefix, rest) = buf.split_at(len_bytes);
    let len = prefix
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if rest.len() < len {
        return Err(format!("field of {len} bytes truncated to {}", rest.len()));
    }
    Ok(rest.split_at(len))
}

fn utf8(b: &[u8], what: &str) -> Result<String, DecodeError> {
    std::str::from_utf8(b)
        .map(str::to_string)
        .map_err(|_| DecodeError::Header(format!("{what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn round_trip() {
        let msg = message(&[("a", "1"), (":event-type", "Thing")], b"payload bytes");
        let (headers, payload, used) = decode(&msg).unwrap();
        assert_eq!(
            headers,
            vec![
                ("a".to_string(), "1".to_string()),
                (":event-type".to_string(), "Thing".to_string())
            ]
        );
        assert_eq!(payload, b"payload bytes");
        assert_eq!(used, msg.len());
    }

    #[test]
    fn consecutive_messages_decode_one_at_a_time() {
        let mut stream = payload_chunk(b"one").to_vec();
        stream.extend_from_slice(&payload_chunk(b"two"));
        let (_, first, used) = decode(&stream).unwrap();
        assert_eq!(first, b"one");
        let (_, second, used2) = decode(&stream[used..]).unwrap();
        assert_eq!(second, b"two");
        assert_eq!(used + used2, stream.len());
    }

    #[test]
    fn payload_chunk_headers() {
        let (headers, payload, _) = decode(&payload_chunk(&[0, 1, 2, 255])).unwrap();
        assert_eq!(header(&headers, ":event-type"), Some("PayloadChunk"));
        assert_eq!(
            header(&headers, ":content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(header(&headers, ":message-type"), Some("event"));
        assert_eq!(payload, vec![0, 1, 2, 255]);
    }

    #[test]
    fn payload_chunks_split_large_writes() {
        let data = vec![7u8; MAX_CHUNK * 2 + 10];
        let sizes: Vec<usize> = payload_chunks(&data)
            .map(|m| decode(&m).unwrap().1.len())
            .collect();
        assert_eq!(sizes, vec![MAX_CHUNK, MAX_CHUNK, 10]);
        assert_eq!(payload_chunks(b"").count(), 0);
    }

    #[test]
    fn invoke_complete_has_only_present_fields() {
        let (headers, payload, _) = decode(&invoke_complete(None, None, None)).unwrap();
        assert_eq!(header(&headers, ":event-type"), Some("InvokeComplete"));
        assert_eq!(header(&headers, ":content-type"), Some("application/json"));
        assert_eq!(header(&headers, ":message-type"), Some("event"));
        assert_eq!(payload, b"{}");

        let msg = invoke_complete(Some("Unhandled"), Some("boom"), None);
        let (_, payload, _) = decode(&msg).unwrap();
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ErrorCode": "Unhandled", "ErrorDetails": "boom"})
        );

        let (_, payload, _) = decode(&invoke_complete(None, None, Some("bG9n"))).unwrap();
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, serde_json::json!({"LogResult": "bG9n"}));
    }

    #[test]
    fn empty_message_known_answer() {
        let msg = message(&[], b"");
        assert_eq!(msg.len(), 16);
        assert_eq!(&msg[..8], &[0, 0, 0, 16, 0, 0, 0, 0]);
        assert_eq!(
            be_u32(&msg[8..12]),
            crc32fast::hash(&[0, 0, 0, 16, 0, 0, 0, 0])
        );
        // The same values as AWS's published "empty message" event-stream test vector.
        assert_eq!(&msg[8..12], &[0x05, 0xc2, 0x48, 0xeb]);
        assert_eq!(&msg[12..16], &[0x7d, 0x98, 0xc8, 0xff]);
        let (headers, payload, used) = decode(&msg).unwrap();
        assert!(headers.is_empty() && payload.is_empty());
        assert_eq!(used, 16);
    }

    #[test]
    fn one_header_layout_by_hand() {
        let msg = message(&[("a", "bc")], b"");
        // Prelude: total 23 = 12 + 7 (header) + 0 + 4; headers 7; then its CRC.
        // Header: name length 1, "a", type 7 (string), value length 2 (u16 BE), "bc".
        // The CRCs were computed independently (Python's zlib.crc32).
        let expected: [u8; 23] = [
            0, 0, 0, 23, 0, 0, 0, 7, 0x29, 0x86, 0x01, 0x58, 1, b'a', 7, 0, 2, b'b', b'c', 0x65,
            0x37, 0x34, 0xdd,
        ];
        assert_eq!(&msg[..], &expected[..]);
    }

    #[test]
    fn corruption_is_detected() {
        let msg = message(&[(":event-type", "PayloadChunk")], b"hello").to_vec();

        let mut bad_prelude = msg.clone();
        bad_prelude[3] ^= 0x01;
        assert!(matches!(
            decode(&bad_prelude),
            Err(DecodeError::PreludeCrc { .. })
        ));

        let mut bad_payload = msg.clone();
        let n = bad_payload.len();
        bad_payload[n - 6] ^= 0x20;
        assert!(matches!(
            decode(&bad_payload),
            Err(DecodeError::MessageCrc { .. })
        ));

        let mut bad_crc = msg.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 0xff;
        assert!(matches!(
            decode(&bad_crc),
            Err(DecodeError::MessageCrc { .. })
        ));
    }

    #[test]
    fn short_buffers_are_incomplete() {
        let msg = payload_chunk(b"hello");
        assert!(matches!(
            decode(&msg[..5]),
            Err(DecodeError::Incomplete { needed: 12, .. })
        ));
        let n = msg.len();
        assert!(matches!(
            decode(&msg[..n - 1]),
            Err(DecodeError::Incomplete { needed, .. }) if needed == n
        ));
    }

    #[test]
    fn impossible_lengths_are_rejected() {
        let mut prelude = vec![0, 0, 0, 8, 0, 0, 0, 0];
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&prelude), Err(DecodeError::Lengths { .. })));
    }

    #[test]
    fn other_header_types_decode_as_text() {
        // Headers: flag=true, n=int32 -2, id=uuid; built by hand as no encoder writes them.
        let mut headers = Vec::new();
        headers.extend_from_slice(&[4]);
        headers.extend_from_slice(b"flag");
        headers.push(TYPE_TRUE);
        headers.extend_from_slice(&[1, b'n', TYPE_INT]);
        headers.extend_from_slice(&(-2i32).to_be_bytes());
        headers.extend_from_slice(&[2, b'i', b'd', TYPE_UUID]);
        headers.extend_from_slice(&[0x11; 16]);
        let total = PRELUDE_LEN + headers.len() + CRC_LEN;
        let mut msg = Vec::new();
        msg.extend_from_slice(&(total as u32).to_be_bytes());
        msg.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let crc = crc32fast::hash(&msg);
        msg.extend_from_slice(&crc.to_be_bytes());
        msg.extend_from_slice(&headers);
        let crc = crc32fast::hash(&msg);
        msg.extend_from_slice(&crc.to_be_bytes());

        let (decoded, payload, _) = decode(&msg).unwrap();
        assert!(payload.is_empty());
        assert_eq!(header(&decoded, "flag"), Some("true"));
        assert_eq!(header(&decoded, "n"), Some("-2"));
        assert_eq!(
            header(&decoded, "id"),
            Some("11111111-1111-1111-1111-111111111111")
        );
    }
}

//! Pieces of the OTLP receivers the telemetry tests run (built on `opentelemetry-proto`).

use axum::body::Bytes;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

/// An attribute's value as text.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Serves OTLP/HTTP (protobuf) on `path` at a free port: each request decoded as `Req`
/// goes to `add` (which may refuse it with a status), and the answer is an empty `Resp`.
/// Returns the base URL.
pub async fn http_receiver<Req, Resp>(
    path: &str,
    add: impl Fn(&axum::http::HeaderMap, Req) -> Result<(), axum::http::StatusCode>
        + Clone
        + Send
        + Sync
        + 'static,
) -> String
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Default + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let add = add.clone();
            async move {
                let Ok(req) = Req::decode(body) else {
                    return axum::http::StatusCode::BAD_REQUEST.into_response();
                };
                match add(&headers, req) {
                    Ok(()) => (
                        [("content-type", "application/x-protobuf")],
                        Resp::default().encode_to_vec(),
                    )
                        .into_response(),
                    Err(status) => status.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

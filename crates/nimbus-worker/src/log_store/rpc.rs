//! The log store behind the worker protocol's log queries: protobuf request in, protobuf
//! response out. Both the worker's gRPC service and `nimbus dev`'s in-process worker call
//! these, so a gateway sees the same answers either way. They block on disk I/O.

use nimbus_proto::worker as pb;

use super::{Cursor, FilterPattern, FilterQuery, LogStore, LogStoreError};

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogQueryError {
    /// A bad filter pattern or page token (`InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] LogStoreError),
}

fn cursor(text: &str) -> Result<Option<Cursor>, LogQueryError> {
    if text.is_empty() {
        return Ok(None);
    }
    Cursor::parse(text).map(Some).ok_or_else(|| {
        LogQueryError::InvalidParameter("The specified nextToken is invalid.".into())
    })
}

/// FilterLogEvents / GetLogEvents.
pub fn filter(
    store: &LogStore,
    req: &pb::FilterLogEventsRequest,
) -> Result<pb::FilterLogEventsResponse, LogQueryError> {
    let pattern = FilterPattern::parse(&req.filter_pattern)
        .map_err(|e| LogQueryError::InvalidParameter(e.to_string()))?;
    let q = FilterQuery {
        stream_names: req.stream_names.clone(),
        stream_prefix: (!req.stream_prefix.is_empty()).then(|| req.stream_prefix.clone()),
        start_ms: req.start_ms,
        end_ms: req.end_ms,
        pattern,
        limit: req.limit as usize,
        after: cursor(&req.after)?,
        before: cursor(&req.before)?,
        from_tail: req.from_tail,
    };
    if !store.group_exists(&req.account_id, &req.function_name) {
        return Ok(pb::FilterLogEventsResponse::default());
    }
    let page = store.filter(&req.account_id, &req.function_name, &q)?;
    Ok(pb::FilterLogEventsResponse {
        group_exists: true,
        more: page.more,
        events: page
            .events
            .into_iter()
            .map(|e| pb::LogEvent {
                event_id: e.cursor.to_string(),
                stream: e.stream,
                timestamp_ms: e.timestamp_ms,
                ingestion_ms: e.ingestion_ms,
                message: e.message,
            })
            .collect(),
    })
}

/// DescribeLogStreams.
pub fn streams(
    store: &LogStore,
    req: &pb::DescribeLogStreamsRequest,
) -> Result<pb::DescribeLogStreamsResponse, LogQueryError> {
    if !store.group_exists(&req.account_id, &req.function_name) {
        return Ok(pb::DescribeLogStreamsResponse::default());
    }
    let streams = store.streams(&req.account_id, &req.function_name, &req.prefix)?;
    Ok(pb::DescribeLogStreamsResponse {
        group_exists: true,
        streams: streams
            .into_iter()
            .map(|s| pb::LogStream {
                name: s.name,
                creation_ms: s.creation_ms,
                first_event_ms: s.first_event_ms,
                last_event_ms: s.last_event_ms,
                stored_bytes: s.stored_bytes,
            })
            .collect(),
    })
}

/// DescribeLogGroups.
pub fn groups(
    store: &LogStore,
    req: &pb::DescribeLogGroupsRequest,
) -> Result<pb::DescribeLogGroupsResponse, LogQueryError> {
    let groups = store.groups(&req.account_id, &req.prefix)?;
    Ok(pb::DescribeLogGroupsResponse {
        groups: groups
            .into_iter()
            .map(|g| pb::LogGroup {
                function_name: g.function,
                creation_ms: g.creation_ms,
                stored_bytes: g.stored_bytes,
            })
            .collect(),
    })
}

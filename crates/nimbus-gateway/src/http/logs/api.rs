//! The CloudWatch Logs operations. Each parses its JSON request, asks every worker
//! through the gateway core's log fan-out, merges the workers' answers and answers
//! in CloudWatch Logs' shapes. Only the caller's account is ever queried.
//!
//! Page tokens are stateless: FilterLogEvents' `nextToken` is the event id (cursor) of the
//! last event returned; GetLogEvents' are `f/<cursor>` and `b/<cursor>`; the Describe
//! operations' are an offset into the sorted list.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nimbus_proto::worker as pb;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::LogsError;
use crate::core::logs::LogQueryError;
use crate::core::Gateway;
use crate::http::Caller;

/// `X-Amz-Target` prefix of every CloudWatch Logs operation.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Lambda's log groups.
const GROUP_PREFIX: &str = "/aws/lambda/";
/// The smallest cursor (timestamp 0): "from the very beginning".
const ZERO_CURSOR: &str = "00000000000000000000000000000000000000000000000000000000000";

/// Whether a request is a CloudWatch Logs call (signed for service `logs`).
pub fn is_logs_request(method: &axum::http::Method, path: &str, headers: &HeaderMap) -> bool {
    method == axum::http::Method::POST
        && path == "/"
        && headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// What every operation needs.
struct Ctx<'a> {
    gw: &'a Gateway,
    account: &'a str,
    region: &'a str,
}

/// `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`.
pub async fn dispatch(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ctx = Ctx {
        gw: &gw,
        account: &caller.account_id,
        region: gw.region(),
    };
    let result = match target.strip_prefix(TARGET_PREFIX) {
        Some("FilterLogEvents") => match parse(&body) {
            Ok(r) => filter_log_events(&ctx, r).await,
            Err(e) => Err(e),
        },
        Some("GetLogEvents") => match parse(&body) {
            Ok(r) => get_log_events(&ctx, r).await,
            Err(e) => Err(e),
        },
        Some("DescribeLogStreams") => match parse(&body) {
            Ok(r) => describe_log_streams(&ctx, r).await,
            Err(e) => Err(e),
        },
        Some("DescribeLogGroups") => match parse(&body) {
            Ok(r) => describe_log_groups(&ctx, r).await,
            Err(e) => Err(e),
        },
        _ => Err(LogsError::new(
            400,
            "UnknownOperationException",
            format!("Unknown operation {target}"),
        )),
    };
    match result {
        Ok(v) => (
            [("content-type", "application/x-amz-json-1.1")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

impl From<LogQueryError> for LogsError {
    fn from(e: LogQueryError) -> Self {
        match e {
            LogQueryError::Invalid(m) => LogsError::invalid(m),
            LogQueryError::Unavailable(m) => LogsError::unavailable(m),
        }
    }
}

impl Ctx<'_> {
    async fn filter_log_events(
        &self,
        req: pb::FilterLogEventsRequest,
    ) -> Result<Vec<pb::FilterLogEventsResponse>, LogQueryError> {
        let workers = self.gw.workers();
        self.gw
            .query_logs("FilterLogEvents", |w| {
                workers.filter_log_events(&w, req.clone())
            })
            .await
    }

    async fn describe_log_streams(
        &self,
        req: pb::DescribeLogStreamsRequest,
    ) -> Result<Vec<pb::DescribeLogStreamsResponse>, LogQueryError> {
        let workers = self.gw.workers();
        self.gw
            .query_logs("DescribeLogStreams", |w| {
                workers.describe_log_streams(&w, req.clone())
            })
            .await
    }

    async fn describe_log_groups(
        &self,
        req: pb::DescribeLogGroupsRequest,
    ) -> Result<Vec<pb::DescribeLogGroupsResponse>, LogQueryError> {
        let workers = self.gw.workers();
        self.gw
            .query_logs("DescribeLogGroups", |w| {
                workers.describe_log_groups(&w, req.clone())
            })
            .await
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, LogsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| LogsError::new(400, "SerializationException", e.to_string()))
}

/// The function of `/aws/lambda/NAME` (given as a name or an ARN); any other group does
/// not exist on Nimbus.
fn function_of(group: Option<&str>, identifier: Option<&str>) -> Result<String, LogsError> {
    let group = match (group, identifier) {
        (Some(g), None) => g.to_owned(),
        (None, Some(id)) => match id.split_once(":log-group:") {
            Some((_, rest)) => rest.trim_end_matches(":*").to_owned(),
            None => id.to_owned(),
        },
        (Some(_), Some(_)) => {
            return Err(LogsError::invalid(
                "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
            ))
        }
        (None, None) => {
            return Err(LogsError::invalid(
                "Either LogGroupName or LogGroupIdentifier must be specified.",
            ))
        }
    };
    // A function's group, or (`<region>.<name>`) what of it ran at an edge location.
    match group.strip_prefix(GROUP_PREFIX) {
        Some(f) if nimbus_types::validate::log_group_function(f) => Ok(f.to_owned()),
        _ => Err(group_not_found()),
    }
}

fn group_not_found() -> LogsError {
    LogsError::not_found("The specified log group does not exist.")
}

fn check_limit(limit: Option<i64>, max: i64) -> Result<Option<u32>, LogsError> {
    match limit {
        None => Ok(None),
        Some(n) if (1..=max).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

fn time(v: Option<i64>, name: &str) -> Result<Option<u64>, LogsError> {
    match v {
        None => Ok(None),
        Some(t) if t >= 0 => Ok(Some(t as u64)),
        Some(t) => Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{t}' at '{name}' failed to satisfy constraint: Member must have value greater than or equal to 0"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FilterInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// Merges the workers' pages: the first (or, `from_tail`, last) `limit` events in cursor
/// order, and whether more exist anywhere.
pub fn merge_events(
    answers: Vec<pb::FilterLogEventsResponse>,
    limit: usize,
    from_tail: bool,
) -> (Vec<pb::LogEvent>, bool) {
    let mut more = answers.iter().any(|a| a.more);
    let mut events: Vec<pb::LogEvent> = answers.into_iter().flat_map(|a| a.events).collect();
    events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    if events.len() > limit {
        more = true;
        if from_tail {
            events.drain(..events.len() - limit);
        } else {
            events.truncate(limit);
        }
    }
    (events, more)
}

async fn filter_log_events(ctx: &Ctx<'_>, r: FilterInput) -> Result<Value, LogsError> {
    let function = function_of(
        r.log_group_name.as_deref(),
        r.log_group_identifier.as_deref(),
    )?;
    if r.log_stream_names.is_some() && r.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "Cannot specify both LogStreamNames and LogStreamNamePrefix.",
        ));
    }
    let limit = check_limit(r.limit, 10_000)?.unwrap_or(10_000);
    let after = r.next_token.unwrap_or_default();
    let req = pb::FilterLogEventsRequest {
        account_id: ctx.account.to_owned(),
        function_name: function,
        stream_names: r.log_stream_names.clone().unwrap_or_default(),
        stream_prefix: r.log_stream_name_prefix.unwrap_or_default(),
        start_ms: time(r.start_time, "startTime")?,
        end_ms: time(r.end_time, "endTime")?,
        filter_pattern: r.filter_pattern.unwrap_or_default(),
        limit,
        after,
        before: String::new(),
        from_tail: false,
    };
    let answers = ctx.filter_log_events(req).await?;
    if !answers.iter().any(|a| a.group_exists) {
        return Err(group_not_found());
    }
    let (events, more) = merge_events(answers, limit as usize, false);
    let mut streams: Vec<String> = events.iter().map(|e| e.stream.clone()).collect();
    streams.sort();
    streams.dedup();
    let mut out = json!({
        "events": events.iter().map(|e| json!({
            "logStreamName": e.stream,
            "timestamp": e.timestamp_ms,
            "message": e.message,
            "ingestionTime": e.ingestion_ms,
            "eventId": e.event_id,
        })).collect::<Vec<_>>(),
        "searchedLogStreams": streams.iter().map(|s| json!({
            "logStreamName": s, "searchedCompletely": !more,
        })).collect::<Vec<_>>(),
    });
    if more {
        if let Some(last) = events.last() {
            out["nextToken"] = last.event_id.clone().into();
        }
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GetInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

async fn get_log_events(ctx: &Ctx<'_>, r: GetInput) -> Result<Value, LogsError> {
    let function = function_of(
        r.log_group_name.as_deref(),
        r.log_group_identifier.as_deref(),
    )?;
    let stream = r
        .log_stream_name
        .ok_or_else(|| LogsError::invalid("logStreamName is required."))?;
    let limit = check_limit(r.limit, 10_000)?.unwrap_or(10_000);
    // Forward from a cursor, backward from one, or the head / the tail.
    let (after, before, from_tail) = match r.next_token.as_deref() {
        Some(t) => match (t.strip_prefix("f/"), t.strip_prefix("b/")) {
            (Some(c), _) => (c.to_owned(), String::new(), false),
            (_, Some(c)) => (String::new(), c.to_owned(), true),
            _ => return Err(LogsError::invalid("The specified nextToken is invalid.")),
        },
        None => (
            String::new(),
            String::new(),
            !r.start_from_head.unwrap_or(false),
        ),
    };
    let streams = ctx
        .describe_log_streams(pb::DescribeLogStreamsRequest {
            account_id: ctx.account.to_owned(),
            function_name: function.clone(),
            prefix: stream.clone(),
        })
        .await?;
    if !streams.iter().any(|s| s.group_exists) {
        return Err(group_not_found());
    }
    if !streams
        .iter()
        .flat_map(|s| &s.streams)
        .any(|s| s.name == stream)
    {
        return Err(LogsError::not_found(
            "The specified log stream does not exist.",
        ));
    }
    let req = pb::FilterLogEventsRequest {
        account_id: ctx.account.to_owned(),
        function_name: function,
        stream_names: vec![stream],
        start_ms: time(r.start_time, "startTime")?,
        end_ms: time(r.end_time, "endTime")?,
        limit,
        after: after.clone(),
        before: before.clone(),
        from_tail,
        ..Default::default()
    };
    let answers = ctx.filter_log_events(req).await?;
    let (events, _) = merge_events(answers, limit as usize, from_tail);
    // At either end the token passed in comes back, which is how callers see the end.
    let forward = match events.last() {
        Some(e) => format!("f/{}", e.event_id),
        None if !after.is_empty() => format!("f/{after}"),
        None => format!("f/{ZERO_CURSOR}"),
    };
    let backward = match events.first() {
        Some(e) => format!("b/{}", e.event_id),
        None if !before.is_empty() => format!("b/{before}"),
        None => format!("b/{ZERO_CURSOR}"),
    };
    Ok(json!({
        "events": events.iter().map(|e| json!({
            "timestamp": e.timestamp_ms,
            "message": e.message,
            "ingestionTime": e.ingestion_ms,
        })).collect::<Vec<_>>(),
        "nextForwardToken": forward,
        "nextBackwardToken": backward,
    }))
}

/// An offset page token of the Describe operations.
fn offset(token: Option<&str>) -> Result<usize, LogsError> {
    match token {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("o/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid.")),
    }
}

fn page<T>(items: Vec<T>, from: usize, limit: usize) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(from).take(limit).collect();
    let next = (from + page.len() < total).then(|| format!("o/{}", from + page.len()));
    (page, next)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StreamsInput {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    next_token: Option<String>,
    limit: Option<i64>,
}

async fn describe_log_streams(ctx: &Ctx<'_>, r: StreamsInput) -> Result<Value, LogsError> {
    let function = function_of(
        r.log_group_name.as_deref(),
        r.log_group_identifier.as_deref(),
    )?;
    let by_time = match r.order_by.as_deref() {
        None | Some("LogStreamName") => false,
        Some("LastEventTime") => true,
        Some(o) => {
            return Err(LogsError::invalid(format!(
                "1 validation error detected: Value '{o}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )))
        }
    };
    if by_time && r.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let limit = check_limit(r.limit, 50)?.unwrap_or(50) as usize;
    let from = offset(r.next_token.as_deref())?;
    let answers = ctx
        .describe_log_streams(pb::DescribeLogStreamsRequest {
            account_id: ctx.account.to_owned(),
            function_name: function.clone(),
            prefix: r.log_stream_name_prefix.unwrap_or_default(),
        })
        .await?;
    if !answers.iter().any(|a| a.group_exists) {
        return Err(group_not_found());
    }
    let mut streams: Vec<pb::LogStream> = answers.into_iter().flat_map(|a| a.streams).collect();
    if by_time {
        streams.sort_by(|a, b| {
            a.last_event_ms
                .cmp(&b.last_event_ms)
                .then(a.name.cmp(&b.name))
        });
    } else {
        streams.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if r.descending.unwrap_or(false) {
        streams.reverse();
    }
    let (streams, next) = page(streams, from, limit);
    let group_arn = format!(
        "arn:aws:logs:{}:{}:log-group:{GROUP_PREFIX}{function}",
        ctx.region, ctx.account
    );
    let mut out = json!({
        "logStreams": streams.iter().map(|s| json!({
            "logStreamName": s.name,
            "creationTime": s.creation_ms,
            "firstEventTimestamp": s.first_event_ms,
            "lastEventTimestamp": s.last_event_ms,
            "lastIngestionTime": s.last_event_ms,
            "arn": format!("{group_arn}:log-stream:{}", s.name),
            "storedBytes": s.stored_bytes,
        })).collect::<Vec<_>>(),
    });
    if let Some(n) = next {
        out["nextToken"] = n.into();
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GroupsInput {
    log_group_name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

async fn describe_log_groups(ctx: &Ctx<'_>, r: GroupsInput) -> Result<Value, LogsError> {
    let limit = check_limit(r.limit, 50)?.unwrap_or(50) as usize;
    let from = offset(r.next_token.as_deref())?;
    let answers = ctx
        .describe_log_groups(pb::DescribeLogGroupsRequest {
            account_id: ctx.account.to_owned(),
            prefix: r.log_group_name_prefix.unwrap_or_default(),
        })
        .await?;
    // One group may have streams on several workers.
    let mut groups: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for g in answers.into_iter().flat_map(|a| a.groups) {
        let e = groups.entry(g.function_name).or_insert((u64::MAX, 0));
        e.0 = e.0.min(g.creation_ms);
        e.1 += g.stored_bytes;
    }
    let (groups, next) = page(groups.into_iter().collect(), from, limit);
    let mut out = json!({
        "logGroups": groups.iter().map(|(f, (created, bytes))| {
            let arn = format!("arn:aws:logs:{}:{}:log-group:{GROUP_PREFIX}{f}", ctx.region, ctx.account);
            json!({
                "logGroupName": format!("{GROUP_PREFIX}{f}"),
                "creationTime": created,
                "metricFilterCount": 0,
                "arn": format!("{arn}:*"),
                "logGroupArn": arn,
                "storedBytes": bytes,
                "logGroupClass": "STANDARD",
            })
        }).collect::<Vec<_>>(),
    });
    if let Some(n) = next {
        out["nextToken"] = n.into();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> pb::LogEvent {
        pb::LogEvent {
            event_id: id.into(),
            ..Default::default()
        }
    }

    fn answer(ids: &[&str], more: bool) -> pb::FilterLogEventsResponse {
        pb::FilterLogEventsResponse {
            group_exists: true,
            events: ids.iter().copied().map(ev).collect(),
            more,
        }
    }

    #[test]
    fn merging_workers_pages() {
        let ids = |v: &[pb::LogEvent]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
        let (e, more) = merge_events(
            vec![answer(&["1", "4"], false), answer(&["2", "3"], false)],
            10,
            false,
        );
        assert_eq!(ids(&e), ["1", "2", "3", "4"]);
        assert!(!more);
        let (e, more) = merge_events(
            vec![answer(&["1", "4"], false), answer(&["2", "3"], false)],
            3,
            false,
        );
        assert_eq!(ids(&e), ["1", "2", "3"]);
        assert!(more);
        let (e, more) = merge_events(
            vec![answer(&["1", "4"], false), answer(&["2", "3"], false)],
            3,
            true,
        );
        assert_eq!(ids(&e), ["2", "3", "4"]);
        assert!(more);
        let (_, more) = merge_events(vec![answer(&["1"], true), answer(&[], false)], 3, false);
        assert!(more, "a worker with more events makes the page incomplete");
    }

    #[test]
    fn group_names_and_limits() {
        assert_eq!(function_of(Some("/aws/lambda/f-1"), None).unwrap(), "f-1");
        assert_eq!(
            function_of(
                None,
                Some("arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f:*")
            )
            .unwrap(),
            "f"
        );
        assert_eq!(
            function_of(Some("/other/x"), None).unwrap_err().error_type,
            "ResourceNotFoundException"
        );
        assert_eq!(
            function_of(Some("/aws/lambda/../x"), None)
                .unwrap_err()
                .error_type,
            "ResourceNotFoundException"
        );
        assert_eq!(
            function_of(None, None).unwrap_err().error_type,
            "InvalidParameterException"
        );
        assert!(check_limit(Some(0), 50).is_err());
        assert!(check_limit(Some(51), 50).is_err());
        assert_eq!(check_limit(Some(50), 50).unwrap(), Some(50));
        assert_eq!(offset(Some("o/3")).unwrap(), 3);
        assert!(offset(Some("x")).is_err());
        let (p, next) = page(vec![1, 2, 3], 1, 1);
        assert_eq!((p, next.as_deref()), (vec![2], Some("o/2")));
        assert_eq!(page(vec![1, 2, 3], 2, 5).1, None);
        assert_eq!(ZERO_CURSOR.len(), 15 + 32 + 12);
    }
}

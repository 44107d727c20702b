//! Lambda's limits and defaults (see shared/reference/LAMBDA.md and AWS's quotas page).

pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
pub const MEMORY_DEFAULT_MB: u32 = 128;
pub const TIMEOUT_MIN_S: u32 = 1;
pub const TIMEOUT_MAX_S: u32 = 900;
pub const TIMEOUT_DEFAULT_S: u32 = 3;
pub const EPHEMERAL_MIN_MB: u32 = 512;
pub const EPHEMERAL_MAX_MB: u32 = 10_240;
pub const EPHEMERAL_DEFAULT_MB: u32 = 512;
/// Environment variables: 4 KB for all keys and values together.
pub const ENVIRONMENT_MAX_BYTES: usize = 4 * 1024;
pub const DESCRIPTION_MAX_CHARS: usize = 256;
pub const FUNCTION_NAME_MAX: usize = 64;
pub const ALIAS_NAME_MAX: usize = 128;
pub const LAYERS_MAX: usize = 5;
pub const TAGS_MAX: usize = 50;
/// Zipped deployment package, direct upload.
pub const CODE_ZIPPED_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// Unzipped deployment package, including layers.
pub const CODE_UNZIPPED_MAX_BYTES: u64 = 250 * 1024 * 1024;
/// Each code chunk travels as its own Raft entry of at most this size.
pub const CODE_CHUNK_BYTES: usize = 1024 * 1024;
/// Default per-region, per-account concurrent executions.
pub const ACCOUNT_CONCURRENCY_DEFAULT: u32 = 1000;
/// Concurrency that always stays unreserved.
pub const UNRESERVED_MIN_DEFAULT: u32 = 100;
pub const ASYNC_RETRIES_MAX: u32 = 2;
pub const ASYNC_RETRIES_DEFAULT: u32 = 2;
pub const ASYNC_EVENT_AGE_DEFAULT_S: u32 = 21_600;
/// `Event` invocation payloads: 1 MB (raised from 256 KB in October 2025).
pub const ASYNC_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
pub const ASYNC_EVENT_AGE_MIN_S: u32 = 60;
pub const ASYNC_EVENT_AGE_MAX_S: u32 = 21_600;
/// Synchronous invocation payloads, request and response: 6 MB each way.
pub const SYNC_PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// The largest response a function may return to a synchronous caller: Lambda allows
/// exactly 6,291,556 bytes (100 more than 6 MiB); past it the invocation ends with
/// `Function.ResponseSizeTooLarge`.
pub const SYNC_RESPONSE_MAX_BYTES: usize = 6_291_556;
/// `X-Amz-Client-Context`, decoded.
pub const CLIENT_CONTEXT_MAX_BYTES: usize = 3583;
/// `X-Amz-Log-Result`: the last 4 KB of the invocation's log.
pub const LOG_TAIL_MAX_BYTES: usize = 4096;
/// One log line as stored; longer lines are split, as CloudWatch Logs does at 256 KB.
pub const LOG_LINE_MAX_BYTES: usize = 256 * 1024;
/// Largest gRPC message between nodes: a 6 MB payload plus its envelope, with room.
pub const NODE_MESSAGE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Total code storage per account and region (`AccountLimit.TotalCodeSize`).
pub const ACCOUNT_CODE_STORAGE_BYTES: u64 = 80 * 1024 * 1024 * 1024;
/// Largest Lambda API request body: a 50 MB zip, base64-encoded inside JSON.
pub const API_BODY_MAX_BYTES: usize = 70 * 1024 * 1024;
/// A resource-based policy (a layer version's), in bytes of its statements.
pub const POLICY_MAX_BYTES: usize = 20 * 1024;

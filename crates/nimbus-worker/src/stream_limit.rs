//! Lambda's limits on a streamed response: the first 6 MB at full speed, then at most
//! 2 MB/s, 200 MB in all.
//!
//! The cap is applied where the bytes enter the platform (the Runtime API reading the
//! function's chunked body), so a function that writes faster is simply read slower:
//! its writes block, and nothing downstream buffers the difference.

use std::time::Duration;

use tokio::time::Instant;

/// Lambda's figures (see `reference/LAMBDA.md`).
pub const STREAM_MAX_BYTES: u64 = 200 * 1024 * 1024;
pub const STREAM_FULL_SPEED_BYTES: u64 = 6 * 1024 * 1024;
pub const STREAM_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;

/// The limits on one streamed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Bytes a response may stream in all; more ends it with an error.
    pub max_bytes: u64,
    /// Bytes sent uncapped before the bandwidth cap starts.
    pub full_speed_bytes: u64,
    /// The cap after that.
    pub bytes_per_sec: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_bytes: STREAM_MAX_BYTES,
            full_speed_bytes: STREAM_FULL_SPEED_BYTES,
            bytes_per_sec: STREAM_BYTES_PER_SEC,
        }
    }
}

/// Why a chunk may not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Response payload size exceeded maximum allowed payload size ({max} bytes).")]
pub struct StreamTooLarge {
    pub max: u64,
}

/// One response's progress against its [`StreamLimits`].
#[derive(Debug)]
pub struct StreamPacer {
    limits: StreamLimits,
    sent: u64,
    /// When the capped part of the stream may send again. Time the stream spent not
    /// sending (a slow function, a slow reader) is not saved up for a later burst: the
    /// cap is a rate at every moment.
    next_free: Option<Instant>,
}

impl StreamPacer {
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            sent: 0,
            next_free: None,
        }
    }

    /// Bytes accepted so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Accounts for `len` more bytes at `now`: the instant before which they may not go
    /// out (`None`: at once), or an error when they would pass `max_bytes`.
    pub fn admit(&mut self, len: usize, now: Instant) -> Result<Option<Instant>, StreamTooLarge> {
        let total = self.sent + len as u64;
        if total > self.limits.max_bytes {
            return Err(StreamTooLarge {
                max: self.limits.max_bytes,
            });
        }
        let uncapped_before = self.sent.max(self.limits.full_speed_bytes);
        self.sent = total;
        if total <= self.limits.full_speed_bytes || self.limits.bytes_per_sec == 0 {
            return Ok(None);
        }
        let capped = total - uncapped_before;
        let start = self.next_free.map_or(now, |t| t.max(now));
        self.next_free =
            Some(start + Duration::from_secs_f64(capped as f64 / self.limits.bytes_per_sec as f64));
        Ok((start > now).then_some(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1024 * 1024;

    #[test]
    fn full_speed_then_capped_then_refused() {
        let limits = StreamLimits {
            max_bytes: 10 * MB as u64,
            full_speed_bytes: 6 * MB as u64,
            bytes_per_sec: 2 * MB as u64,
        };
        let mut p = StreamPacer::new(limits);
        let t0 = Instant::now();
        // Six 1 MB chunks at once: no wait.
        for _ in 0..6 {
            assert_eq!(p.admit(MB, t0), Ok(None));
        }
        // The seventh goes at once and takes the cap's next half second (1 MB at 2 MB/s).
        assert_eq!(p.admit(MB, t0), Ok(None));
        let due = p.admit(MB, t0).unwrap().expect("capped");
        assert_eq!(due - t0, Duration::from_millis(500));
        // Sent on time, the next waits another half second.
        let due2 = p.admit(MB / 2, due).unwrap().expect("capped");
        assert_eq!(due2 - t0, Duration::from_secs(1));
        // A chunk after a long silence goes at once, but the silence is not saved up:
        // the one right after it waits its share again.
        let late = t0 + Duration::from_secs(5);
        assert_eq!(p.admit(MB / 2, late), Ok(None));
        assert_eq!(
            p.admit(1, late).unwrap(),
            Some(late + Duration::from_millis(250))
        );
        assert_eq!(p.sent(), 9 * MB as u64 + 1);
        // Passing the total is refused and not counted.
        assert_eq!(
            p.admit(MB, t0 + Duration::from_secs(6)),
            Err(StreamTooLarge {
                max: 10 * MB as u64
            })
        );
        assert_eq!(p.sent(), 9 * MB as u64 + 1);
        assert!(p.admit(MB - 1, t0 + Duration::from_secs(9)).is_ok());
    }

    #[test]
    fn defaults_are_lambdas() {
        let l = StreamLimits::default();
        assert_eq!(l.max_bytes, 209_715_200);
        assert_eq!(l.full_speed_bytes, 6_291_456);
        assert_eq!(l.bytes_per_sec, 2_097_152);
        let msg = StreamTooLarge { max: l.max_bytes }.to_string();
        assert!(msg.contains("209715200"), "{msg}");
    }
}

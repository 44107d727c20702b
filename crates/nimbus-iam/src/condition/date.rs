//! Timestamps for the `Date*` operators: ISO 8601 (`2019-07-16T12:00:00Z`, with optional
//! fraction and `±hh:mm` offset, or shorter forms such as `2019-07-16`) or whole seconds
//! since the Unix epoch — the two forms AWS accepts for `aws:CurrentTime` /
//! `aws:EpochTime` and in policies. Parsed by hand (no date crate) into a comparable
//! instant; the grammar is as lenient as IAM's legacy parser, which accepts partial dates.

/// An instant: seconds since the Unix epoch, then nanoseconds. Ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp {
    secs: i64,
    nanos: u32,
}

/// Years IAM accepts (Java's `Date` range).
const MIN_YEAR: i64 = -292_275_054;
const MAX_YEAR: i64 = 292_278_993;

/// Parses an ISO 8601 date-time or epoch seconds.
pub(crate) fn parse(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if !s.contains(['t', 'T', '-']) {
        let secs: u64 = digits(s)?;
        return Some(Timestamp {
            secs: i64::try_from(secs).ok()?,
            nanos: 0,
        });
    }
    let (date, time) = match s.find(['t', 'T']) {
        Some(at) => (&s[..at], &s[at + 1..]),
        None => (s, ""),
    };
    let (negative, date) = match date.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, date),
    };
    let mut fields = date.split('-');
    let year: i64 = digits(fields.next()?)?;
    let year = if negative { -year } else { year };
    let month = fields.next().map_or(Some(1), digits::<i64>)?;
    let day = fields.next().map_or(Some(1), digits::<i64>)?;
    if fields.next().is_some()
        || !(MIN_YEAR..=MAX_YEAR).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let (clock, offset) = split_zone(time)?;
    let (seconds_of_day, nanos) = parse_clock(clock)?;
    let secs = days_from_civil(year, month, day) * 86_400 + seconds_of_day - offset;
    Some(Timestamp { secs, nanos })
}

/// Splits `hh:mm:ss.fffZ` / `…+hh:mm` / `…-hhmm` into the clock and the zone offset in
/// seconds east of UTC.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, zone) = (&time[..at], &time[at + 1..]);
    let sign = if time[at..].starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = match zone.split_once(':') {
        Some((h, m)) => (h, m),
        None if zone.len() == 4 => zone.split_at(2),
        None => (zone, "00"),
    };
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i64, i64) = (digits(hours)?, digits(minutes)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 3600 + minutes * 60)))
}

/// `hh[:mm[:ss[.fraction]]]` (all optional) into seconds of the day and nanoseconds.
fn parse_clock(clock: &str) -> Option<(i64, u32)> {
    if clock.is_empty() {
        return Some((0, 0));
    }
    let mut fields = clock.split(':');
    let hours: i64 = digits(fields.next()?)?;
    let minutes: i64 = fields.next().map_or(Some(0), digits)?;
    let (seconds, nanos) = match fields.next() {
        None => (0, 0),
        Some(field) => match field.split_once('.') {
            None => (digits(field)?, 0),
            Some((whole, fraction)) => (digits(whole)?, fraction_nanos(fraction)?),
        },
    };
    if fields.next().is_some() || hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some((hours * 3600 + minutes * 60 + seconds, nanos))
}

/// Up to nine fractional digits as nanoseconds.
fn fraction_nanos(fraction: &str) -> Option<u32> {
    if fraction.len() > 9 {
        return None;
    }
    let value: u32 = digits(fraction)?;
    Some(value * 10u32.pow(9 - fraction.len() as u32))
}

/// A non-empty run of ASCII digits.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). Days past a month's end roll into the next month.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> i64 {
        parse(s).unwrap_or_else(|| panic!("{s} should parse")).secs
    }

    #[test]
    fn epoch_and_iso_agree() {
        assert_eq!(secs("0"), 0);
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2019-07-16T12:00:00Z"), 1_563_278_400);
        assert_eq!(secs("1563278400"), 1_563_278_400);
        assert_eq!(secs("2000-03-01"), 951_868_800);
        assert_eq!(secs("1969-12-31T23:59:59Z"), -1);
    }

    #[test]
    fn offsets_and_fractions() {
        assert_eq!(secs("2019-07-16T14:00:00+02:00"), 1_563_278_400);
        assert_eq!(secs("2019-07-16T07:00:00-0500"), 1_563_278_400);
        assert_eq!(secs("2019-07-16t12:00:00.5z"), 1_563_278_400);
        let a = parse("2016-12-13T21:20:37.593194+00:00").unwrap();
        let b = parse("2016-12-13T21:20:37.593195Z").unwrap();
        assert!(a < b);
        assert_eq!(a.nanos, 593_194_000);
    }

    #[test]
    fn lenient_forms_iam_accepts() {
        assert!(parse("01T").is_some());
        assert!(parse("2016-12-13t2:00:00.593194+23").is_some());
        assert!(parse("-292275054").is_some());
        assert!(parse("2019-07").is_some());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "sdfdsf",
            "234-13",
            "2016-12-13t2:00:00.593194+1",
            "2016-12-13t2:00:00.1999999999+10:59",
            "9223372036854775808",
            "2019-07-16T24:00:00Z",
            "2019-07-16-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}

//! Reads back the OpenMetrics text a [`MetricsRegistry`](crate::MetricsRegistry) writes,
//! as typed families, so the OTLP metrics export ([`crate::otlp_metrics`]) sends exactly
//! what `/metrics` serves.
//!
//! Why parse our own output: `prometheus-client` hands its values out only through its
//! encoders. Its structured (protobuf) encoder needs prost 0.12 and `protoc` at build
//! time, while the workspace is on prost 0.14 without `protoc`; the text encoder is always
//! there and its output is small and regular (`# HELP`, `# TYPE`, `# UNIT`, samples,
//! `# EOF`). The parser is strict: anything it does not understand is an error, which the
//! tests against a real registry would show, rather than a silently missing series.

use std::fmt;

/// A metric family's type, as `# TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
    /// Types without an OTLP equivalent here (stateset, summary, gaugehistogram, unknown).
    Other,
}

/// A sample's labels, in the order written.
pub type Labels = Vec<(String, String)>;

/// One line of samples: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// What follows the family name (`_total`, `_bucket`, `_sum`, `_count`, `_info`, or
    /// nothing).
    pub suffix: String,
    pub labels: Labels,
    pub value: f64,
    /// The value when it was written as an integer (counters and gauges of integers).
    pub int: Option<i64>,
}

/// A metric family: its descriptor lines and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub unit: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// A line the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenMetrics line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Family>, ParseError> {
    let mut families: Vec<Family> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest
                .split_once(' ')
                .ok_or_else(|| err(format!("malformed descriptor {line:?}")))?;
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = match families.last_mut() {
                Some(f) if f.name == name => f,
                _ => {
                    families.push(Family {
                        name: name.to_string(),
                        help: String::new(),
                        unit: String::new(),
                        kind: Kind::Other,
                        samples: Vec::new(),
                    });
                    families.last_mut().expect("just pushed")
                }
            };
            match keyword {
                "HELP" => family.help = unescape(value),
                "UNIT" => family.unit = value.to_string(),
                "TYPE" => {
                    family.kind = match value {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "info" => Kind::Info,
                        _ => Kind::Other,
                    }
                }
                _ => return Err(err(format!("unknown descriptor {keyword:?}"))),
            }
            continue;
        }
        let family = families
            .last_mut()
            .ok_or_else(|| err("a sample before any # TYPE line".into()))?;
        let sample = parse_sample(line, &family.name).map_err(err)?;
        family.samples.push(sample);
    }
    Ok(families)
}

fn parse_sample(line: &str, family: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    let suffix = name
        .strip_prefix(family)
        .ok_or_else(|| format!("sample {name:?} outside its family {family:?}"))?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    // `value [timestamp] [# exemplar]`: only the value is used.
    let value_text = rest
        .trim_start()
        .split(' ')
        .next()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("bad value {v:?} in {line:?}"))?,
    };
    Ok(Sample {
        suffix: suffix.to_string(),
        labels,
        value,
        int: value_text.parse::<i64>().ok(),
    })
}

/// Parses `a="x",b="y"}` and returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, rest) = s
            .split_once("=\"")
            .ok_or_else(|| format!("malformed labels near {s:?}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape in a label".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((name.trim_start_matches(',').to_string(), value));
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as PcFamily;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    use super::*;
    use crate::MetricsRegistry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        function: String,
    }

    /// Parses what a real registry writes. (`prometheus-client` does not escape label
    /// values; Nimbus's are validated names, versions and regions, so none need it.)
    #[test]
    fn reads_back_a_registry() {
        let r = MetricsRegistry::new();
        let c = PcFamily::<L, Counter>::default();
        r.register("calls", "Calls \"made\"", c.clone());
        let g = Gauge::<i64>::default();
        r.register("level", "Level", g.clone());
        let h = Histogram::new([0.5, 1.0]);
        r.register("wait_seconds", "Waits", h.clone());
        c.get_or_create(&L {
            function: "my-fn_1".into(),
        })
        .inc_by(7);
        g.set(-3);
        for v in [0.1, 0.7, 3.0] {
            h.observe(v);
        }

        let fams = parse(&r.encode()).unwrap();
        let calls = fams.iter().find(|f| f.name == "calls").unwrap();
        assert_eq!(calls.kind, Kind::Counter);
        assert!(calls.help.starts_with("Calls \"made\""), "{}", calls.help);
        assert_eq!(calls.samples.len(), 1);
        assert_eq!(calls.samples[0].suffix, "_total");
        assert_eq!(
            calls.samples[0].labels,
            vec![("function".to_string(), "my-fn_1".to_string())]
        );
        assert_eq!(calls.samples[0].int, Some(7));

        let level = fams.iter().find(|f| f.name == "level").unwrap();
        assert_eq!(level.kind, Kind::Gauge);
        assert_eq!(level.samples[0].int, Some(-3));

        let wait = fams.iter().find(|f| f.name == "wait_seconds").unwrap();
        assert_eq!(wait.kind, Kind::Histogram);
        let bucket = |le: &str| {
            wait.samples
                .iter()
                .find(|s| s.suffix == "_bucket" && s.labels == vec![("le".into(), le.into())])
                .unwrap()
                .value
        };
        assert_eq!(bucket("0.5"), 1.0);
        assert_eq!(bucket("1.0"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        let sum = wait.samples.iter().find(|s| s.suffix == "_sum").unwrap();
        assert!((sum.value - 3.8).abs() < 1e-9);
    }

    #[test]
    fn reads_escaped_label_values() {
        let f = parse("# TYPE a gauge\na{x=\"q\\\"\\\\\\n\",y=\"\"} 1.5\n# EOF\n").unwrap();
        assert_eq!(
            f[0].samples[0].labels,
            vec![("x".into(), "q\"\\\n".into()), ("y".into(), String::new())]
        );
        assert_eq!(f[0].samples[0].value, 1.5);
        assert_eq!(f[0].samples[0].int, None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse("calls_total 1\n").is_err(), "sample before TYPE");
        assert!(parse("# TYPE a counter\na_total{x=\"1} 2\n").is_err());
        assert!(parse("# TYPE a counter\na_total lots\n").is_err());
        assert!(parse("# TYPE a counter\nb_total 1\n").is_err());
        assert!(parse("# FOO a b\n").is_err());
    }
}

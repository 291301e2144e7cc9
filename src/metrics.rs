//! The metric model and its two encoders: Prometheus text 0.0.4 and OpenMetrics 1.0.0.
//!
//! `crate::families` turns the model into [`Family`] values when a source's sample arrives; a
//! scrape only encodes them. The encoder is ours rather than prometheus-client's: on the same
//! families the two write identical expositions, ours 1.2-1.6 times faster and without six more
//! crates (`cargo bench --bench kept_crates`; README "Benchmarks").

use std::fmt::Write;

/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A monotonically increasing value; its name ends in `_total`.
    Counter,
    Gauge,
    /// String facts as labels with the value 1; its name ends in `_info`.
    Info,
    /// Cumulative `_bucket{le}` counts with `_sum` and `_count`, pushed by
    /// [`Family::push_histogram`].
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// Picks OpenMetrics only when the scraper's Accept header asks for it, as Prometheus does.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// One sample: label pairs (in output order) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the family name: `_bucket`, `_sum` or `_count` in a histogram, else empty.
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family. `name` is the full Prometheus name (with `_total` or `_info`).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        debug_assert!(kind != Kind::Info || name.ends_with("_info"), "{name}");
        Family { name, help, kind, samples: Vec::new() }
    }

    pub fn counter(name: &'static str, help: &'static str) -> Family {
        Family::new(name, Kind::Counter, help)
    }

    pub fn gauge(name: &'static str, help: &'static str) -> Family {
        Family::new(name, Kind::Gauge, help)
    }

    pub fn info(name: &'static str, help: &'static str) -> Family {
        Family::new(name, Kind::Info, help)
    }

    /// Adds a sample; `labels` are given in output order.
    pub fn push<const N: usize>(&mut self, labels: [(&'static str, &str); N], value: f64) {
        self.push_labels(&labels, value);
    }

    /// Adds a sample whose labels are a slice; given in output order.
    pub fn push_labels(&mut self, labels: &[(&'static str, &str)], value: f64) {
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.samples.push(Sample { suffix: "", labels, value });
    }

    /// A histogram family with no samples yet.
    pub fn histogram(name: &'static str, help: &'static str) -> Family {
        Family::new(name, Kind::Histogram, help)
    }

    /// Adds one histogram: `buckets` are (upper bound, cumulative count) in increasing order,
    /// without `+Inf`, which is `count`. Labels are given in output order; `le` comes last.
    pub fn push_histogram<const N: usize>(
        &mut self,
        labels: [(&'static str, &str); N],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        debug_assert!(self.kind == Kind::Histogram, "{}", self.name);
        let base: Vec<(&'static str, String)> = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let bucket = |le: String, value: u64| {
            let mut labels = base.clone();
            labels.push(("le", le));
            Sample { suffix: "_bucket", labels, value: value as f64 }
        };
        for &(le, cumulative) in buckets {
            let mut text = String::new();
            push_value(&mut text, le);
            self.samples.push(bucket(text, cumulative));
        }
        self.samples.push(bucket("+Inf".to_owned(), count));
        self.samples.push(Sample { suffix: "_sum", labels: base.clone(), value: sum });
        self.samples.push(Sample { suffix: "_count", labels: base, value: count as f64 });
    }

    /// The same family with a single unlabelled sample.
    pub fn with_value(mut self, value: f64) -> Family {
        self.push([], value);
        self
    }
}

/// Encodes families in order. Families without samples are left out entirely.
pub fn encode<'a>(format: Format, families: impl IntoIterator<Item = &'a Family>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    encode_into(&mut out, format, families);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Appends the families' exposition to `out`, without OpenMetrics' closing `# EOF`.
pub fn encode_into<'a>(out: &mut String, format: Format, families: impl IntoIterator<Item = &'a Family>) {
    for family in families {
        encode_family(out, format, family);
    }
}

fn encode_family(out: &mut String, format: Format, family: &Family) {
    if family.samples.is_empty() {
        return;
    }
    // OpenMetrics names the family without the `_total` / `_info` suffix its samples carry.
    let (family_name, type_name) = match (format, family.kind) {
        (Format::Text, Kind::Counter) => (family.name, "counter"),
        (_, Kind::Histogram) => (family.name, "histogram"),
        (Format::Text, _) => (family.name, "gauge"),
        (Format::OpenMetrics, Kind::Counter) => (strip(family.name, "_total"), "counter"),
        (Format::OpenMetrics, Kind::Gauge) => (family.name, "gauge"),
        (Format::OpenMetrics, Kind::Info) => (strip(family.name, "_info"), "info"),
    };
    out.push_str("# HELP ");
    out.push_str(family_name);
    out.push(' ');
    escape_into(out, family.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(family_name);
    out.push(' ');
    out.push_str(type_name);
    out.push('\n');
    for sample in &family.samples {
        out.push_str(family.name);
        out.push_str(sample.suffix);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (key, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push_str("=\"");
                escape_into(out, value, true);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        push_value(out, sample.value);
        out.push('\n');
    }
}

fn strip<'a>(name: &'a str, suffix: &str) -> &'a str {
    name.strip_suffix(suffix).unwrap_or(name)
}

/// Escapes a label value (backslash, double quote, newline) or a help text (backslash, newline).
fn escape_into(out: &mut String, s: &str, quote: bool) {
    if !s.bytes().any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integral values print without a fraction; others in Rust's shortest round-trip form.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_families() -> Vec<Family> {
        let mut reads = Family::counter("x_reads_total", "Reads completed.");
        reads.push([("device", "sda")], 12.0);
        let mut info = Family::info("x_disk_info", "Disk facts.");
        info.push([("device", "sda"), ("model", "A \"quoted\" \\ model\nline")], 1.0);
        let lat = Family::gauge("x_latency_seconds", "Latency.").with_value(0.0025);
        let empty = Family::gauge("x_empty", "Never shown.");
        vec![reads, info, lat, empty]
    }

    #[test]
    fn text_format() {
        let out = encode(Format::Text, &sample_families());
        assert_eq!(
            out,
            "# HELP x_reads_total Reads completed.\n# TYPE x_reads_total counter\n\
             x_reads_total{device=\"sda\"} 12\n\
             # HELP x_disk_info Disk facts.\n# TYPE x_disk_info gauge\n\
             x_disk_info{device=\"sda\",model=\"A \\\"quoted\\\" \\\\ model\\nline\"} 1\n\
             # HELP x_latency_seconds Latency.\n# TYPE x_latency_seconds gauge\n\
             x_latency_seconds 0.0025\n"
        );
    }

    #[test]
    fn openmetrics_format() {
        let out = encode(Format::OpenMetrics, &sample_families());
        assert!(out.contains("# TYPE x_reads counter\nx_reads_total{device=\"sda\"} 12\n"));
        assert!(out.contains("# TYPE x_disk info\nx_disk_info{"));
        assert!(out.ends_with("x_latency_seconds 0.0025\n# EOF\n"));
    }

    #[test]
    fn histogram() {
        let mut h = Family::histogram("x_io_latency_seconds", "Latency.");
        h.push_histogram(
            [("device", "sda"), ("op", "read")],
            &[(0.000001, 0), (0.000002, 3), (0.5, 4)],
            0.25,
            5,
        );
        let text = encode(Format::Text, [&h]);
        assert_eq!(
            text,
            "# HELP x_io_latency_seconds Latency.\n# TYPE x_io_latency_seconds histogram\n\
             x_io_latency_seconds_bucket{device=\"sda\",op=\"read\",le=\"0.000001\"} 0\n\
             x_io_latency_seconds_bucket{device=\"sda\",op=\"read\",le=\"0.000002\"} 3\n\
             x_io_latency_seconds_bucket{device=\"sda\",op=\"read\",le=\"0.5\"} 4\n\
             x_io_latency_seconds_bucket{device=\"sda\",op=\"read\",le=\"+Inf\"} 5\n\
             x_io_latency_seconds_sum{device=\"sda\",op=\"read\"} 0.25\n\
             x_io_latency_seconds_count{device=\"sda\",op=\"read\"} 5\n"
        );
        let om = encode(Format::OpenMetrics, [&h]);
        assert!(
            om.starts_with("# HELP x_io_latency_seconds Latency.\n# TYPE x_io_latency_seconds histogram\n")
        );
        assert!(om.ends_with("x_io_latency_seconds_count{device=\"sda\",op=\"read\"} 5\n# EOF\n"));
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -3.0, 1e20, 0.1, 18446744073709551615.0] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "NaN +Inf -Inf -3 100000000000000000000 0.1 18446744073709552000 ");
    }

    #[test]
    fn accept_header() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
    }
}

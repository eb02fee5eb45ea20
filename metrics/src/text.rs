//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then
//! one sample per line, `name{label="value",...} number`.
//!
//! Escaping: in label values `\`, `"` and newline become `\\`, `\"` and `\n`; in help text
//! `\` and newline become `\\` and `\n`. Numbers: integers as integers, other floats in Rust's
//! shortest round-trip form, infinities as `+Inf` / `-Inf`, NaN as `NaN`.

use std::fmt::Write;

use crate::registry::Kind;

/// The `Content-Type` of a rendering.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes metric families into a rendering; what a [`crate::Collector`] is handed.
pub struct Encoder<'a> {
    out: &'a mut String,
}

impl<'a> Encoder<'a> {
    pub fn new(out: &'a mut String) -> Encoder<'a> {
        Encoder { out }
    }

    /// Starts a gauge family: writes its `# HELP` and `# TYPE` lines; samples follow.
    pub fn gauge_family<'b>(&'b mut self, name: &'b str, help: &str) -> FamilyWriter<'b> {
        self.family(name, help, Kind::Gauge)
    }

    /// Starts a counter family (a value computed at scrape time that only goes up).
    pub fn counter_family<'b>(&'b mut self, name: &'b str, help: &str) -> FamilyWriter<'b> {
        self.family(name, help, Kind::Counter)
    }

    /// A gauge family of one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.gauge_family(name, help).sample(&[], value);
    }

    pub(crate) fn family<'b>(
        &'b mut self,
        name: &'b str,
        help: &str,
        kind: Kind,
    ) -> FamilyWriter<'b> {
        write_header(self.out, name, help, kind);
        FamilyWriter {
            out: self.out,
            name,
        }
    }
}

/// Writes the samples of one family.
pub struct FamilyWriter<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl FamilyWriter<'_> {
    /// One sample with these labels (label values are escaped here).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        write_sample(self.out, self.name, "", labels, None, |out| {
            write_f64(out, value)
        });
        self
    }
}

pub(crate) fn write_header(out: &mut String, name: &str, help: &str, kind: Kind) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// `name` + `suffix`, the labels and an optional `le` label, then the value and a newline.
pub(crate) fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: impl FnOnce(&mut String),
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value(out);
    out.push('\n');
}

pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

pub(crate) fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

pub(crate) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

pub(crate) fn write_u64(out: &mut String, v: u64) {
    let _ = write!(out, "{v}");
}

pub(crate) fn write_i64(out: &mut String, v: i64) {
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = String::new();
        let mut enc = Encoder::new(&mut out);
        enc.gauge_family("x", "a \\ b\nc \"quoted\"")
            .sample(&[("path", "C:\\dir\n\"q\"")], 1.0);
        assert_eq!(
            out,
            "# HELP x a \\\\ b\\nc \"quoted\"\n# TYPE x gauge\nx{path=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n"
        );
    }

    #[test]
    fn numbers() {
        let cases = [
            (1.0, "1"),
            (0.25, "0.25"),
            (-3.0, "-3"),
            (1e-7, "0.0000001"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut out = String::new();
            write_f64(&mut out, v);
            assert_eq!(out, want);
        }
    }
}

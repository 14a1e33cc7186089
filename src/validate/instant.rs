//! Dates as Honua reads a temporal boundary: `DateTimeOffset.TryParse(value, InvariantCulture,
//! AssumeUniversal)` (`LayerConfigurationBuilder.ParseDate`). ISO 8601 is what OGC clients expect; the
//! other forms below are ones the invariant culture also reads, so Honua loads them. This list
//! approximates .NET's parser (it accepts more, e.g. a bare time of day meaning today); a form missing
//! here is reported as unreadable, the safe side for a reviewer.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Iso,
    /// Read by .NET's invariant culture, but not ISO 8601.
    Lenient,
}

/// The instant in UTC (a value without an offset is UTC, as `AssumeUniversal` makes it), and its form.
pub fn parse(s: &str) -> Option<(NaiveDateTime, Form)> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some((t.naive_utc(), Form::Iso));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some((t.naive_utc(), Form::Iso));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some((t, Form::Iso));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| (t, Form::Iso));
    }
    lenient(s).map(|t| (t, Form::Lenient))
}

fn lenient(s: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.naive_utc());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M:%S%.fZ", "%Y-%m-%d %H:%M:%SZ"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.naive_utc());
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %I:%M %p",
        "%d %B %Y %H:%M:%S",
        "%B %d, %Y %H:%M:%S",
        "%b %d, %Y %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    for f in
        ["%Y/%m/%d", "%m/%d/%Y", "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%Y.%m.%d"]
    {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_forms() {
        for ok in ["2024-12-31T23:59:59Z", "2024-01-01", "2024-01-01T00:00:00+02:00", "2024-01-01T00:00:00.5Z"] {
            assert_eq!(parse(ok).map(|p| p.1), Some(Form::Iso), "{ok}");
        }
    }

    #[test]
    fn forms_dotnet_reads_that_are_not_iso() {
        for ok in [
            "01/02/2024",
            "2024/01/02",
            "January 2, 2024",
            "2 January 2024",
            "2024-01-01 10:00:00",
            "Tue, 02 Jan 2024 10:00:00 GMT",
        ] {
            assert_eq!(parse(ok).map(|p| p.1), Some(Form::Lenient), "{ok}");
        }
        let (t, _) = parse("01/02/2024").unwrap();
        assert_eq!(t.to_string(), "2024-01-02 00:00:00", "the invariant culture reads month first");
    }

    #[test]
    fn unreadable() {
        for bad in ["not-a-valid-date", "2024-13-01", "2024-01-01T25:00:00Z", "31/12/2024", "soon"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

//! Deployment windows (weekday + UTC time range) and blackout periods (inclusive date ranges).
//!
//! Evaluated at a given instant (`--at` in tests and CI, now by default). An approved deployment outside
//! a window waits, and the schedule says when it may start.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::config::dialect::place;
use crate::config::node::Node;
use crate::config::source::SourceMap;
use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    #[serde(serialize_with = "ser_weekday", deserialize_with = "de_weekday")]
    pub day_of_week: Weekday,
    pub start_time: NaiveTime,
    pub end_time: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    pub name: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub reason: String,
}

fn ser_weekday<S: serde::Serializer>(d: &Weekday, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{d:?}"))
}

fn de_weekday<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Weekday, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| serde::de::Error::custom(format!("`{text}` is not a day of the week")))
}

/// An environment's windows and blackouts as a deployment keeps them, so whether it may start is
/// decided when an agent asks, not when it was planned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
}

impl Rules {
    pub fn at(&self, at: DateTime<Utc>) -> Schedule {
        schedule(&self.windows, &self.blackouts, at)
    }
}

/// Whether a deployment may start at an instant, and if not, why and from when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub allowed_now: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_allowed: Option<DateTime<Utc>>,
}

fn time(node: Option<&Node>) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(node?.as_str()?, "%H:%M").ok()
}

fn date(node: Option<&Node>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(node?.as_str()?, "%Y-%m-%d").ok()
}

impl Window {
    pub fn load(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> Option<Window> {
        let day = node.get_str("dayOfWeek").and_then(|d| d.parse::<Weekday>().ok());
        match (day, time(node.get("startTime")), time(node.get("endTime"))) {
            (Some(day_of_week), Some(start_time), Some(end_time)) if start_time < end_time => {
                Some(Window { day_of_week, start_time, end_time })
            }
            _ => {
                out.push(super::type_error(
                    sources,
                    node,
                    "a deployment window",
                    "`{dayOfWeek: Monday, startTime: \"09:00\", endTime: \"17:00\"}` (UTC, start before end)",
                ));
                None
            }
        }
    }

    fn contains(&self, at: DateTime<Utc>) -> bool {
        let t = at.time();
        at.weekday() == self.day_of_week && t >= self.start_time && t < self.end_time
    }
}

impl Blackout {
    pub fn load(node: &Node, sources: &SourceMap, out: &mut Vec<Diagnostic>) -> Option<Blackout> {
        match (date(node.get("startDate")), date(node.get("endDate"))) {
            (Some(start_date), Some(end_date)) if start_date <= end_date => Some(Blackout {
                name: node.get_str("name").unwrap_or("blackout").to_string(),
                start_date,
                end_date,
                reason: node.get_str("reason").unwrap_or_default().to_string(),
            }),
            _ => {
                let at = place(sources, node.loc);
                out.push(Diagnostic::error(
                    "policy.invalid",
                    at,
                    "a blackout period needs `startDate` and `endDate` as YYYY-MM-DD, start not after end",
                ));
                None
            }
        }
    }

    fn contains(&self, at: DateTime<Utc>) -> bool {
        let d = at.date_naive();
        d >= self.start_date && d <= self.end_date
    }
}

/// Evaluates windows and blackouts at `at`. No windows means any time outside blackouts.
pub fn schedule(windows: &[Window], blackouts: &[Blackout], at: DateTime<Utc>) -> Schedule {
    let allowed = |t: DateTime<Utc>| {
        !blackouts.iter().any(|b| b.contains(t)) && (windows.is_empty() || windows.iter().any(|w| w.contains(t)))
    };
    if allowed(at) {
        return Schedule { allowed_now: true, reason: None, next_allowed: None };
    }
    let reason = match blackouts.iter().find(|b| b.contains(at)) {
        Some(b) => format!(
            "blackout `{}` ({} to {}){}",
            b.name,
            b.start_date,
            b.end_date,
            if b.reason.is_empty() { String::new() } else { format!(": {}", b.reason) }
        ),
        None => "outside the deployment windows".to_string(),
    };
    // Candidate start instants: each window's opening and each midnight, over the next 400 days.
    let mut next = None;
    let start_day = at.date_naive();
    'days: for offset in 0..400 {
        let day = start_day + Duration::days(offset);
        let mut candidates: Vec<DateTime<Utc>> = vec![day.and_time(NaiveTime::MIN).and_utc()];
        candidates.extend(
            windows.iter().filter(|w| w.day_of_week == day.weekday()).map(|w| day.and_time(w.start_time).and_utc()),
        );
        candidates.sort();
        for c in candidates {
            if c > at && allowed(c) {
                next = Some(c);
                break 'days;
            }
        }
    }
    Schedule { allowed_now: false, reason: Some(reason), next_allowed: next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays() -> Vec<Window> {
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu]
            .into_iter()
            .map(|d| Window {
                day_of_week: d,
                start_time: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                end_time: NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            })
            .chain([Window {
                day_of_week: Weekday::Fri,
                start_time: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                end_time: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
            }])
            .collect()
    }

    #[test]
    fn inside_and_outside_windows() {
        let w = weekdays();
        // 2026-11-25 is a Wednesday.
        assert!(schedule(&w, &[], at("2026-11-25T10:00:00Z")).allowed_now);
        let friday_late = schedule(&w, &[], at("2026-11-27T16:00:00Z"));
        assert!(!friday_late.allowed_now);
        assert_eq!(friday_late.next_allowed, Some(at("2026-11-30T09:00:00Z")));
    }

    #[test]
    fn blackout_wins_over_window() {
        let b = vec![Blackout {
            name: "Holiday Season".into(),
            start_date: NaiveDate::from_ymd_opt(2026, 12, 20).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2027, 1, 5).unwrap(),
            reason: "freeze".into(),
        }];
        let s = schedule(&weekdays(), &b, at("2026-12-22T10:00:00Z"));
        assert!(!s.allowed_now);
        assert!(s.reason.unwrap().contains("Holiday Season"));
        assert_eq!(s.next_allowed, Some(at("2027-01-06T09:00:00Z")));
    }
}

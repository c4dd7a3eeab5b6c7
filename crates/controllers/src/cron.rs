//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's `ParseStandard`):
//! five fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists, ranges,
//! steps and English month/day names, the descriptors `@yearly`/`@annually`, `@monthly`,
//! `@weekly`, `@daily`/`@midnight`, `@hourly` and `@every <duration>`, evaluated in a time zone.
//!
//! No cron crate reads this exact dialect on jiff (robfig's day-of-month/day-of-week rule, no
//! seconds field), so this is a small parser of our own.

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::{Span, Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Fields(Fields),
    /// `@every <duration>`: fixed intervals from the previous activation.
    Every(Duration),
}

/// One bit per allowed value; `star` as robfig: the field was `*`/`?` (without a step), which
/// changes how day of month and day of week combine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl std::str::FromStr for Schedule {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Schedule, ParseError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix('@') {
            return descriptor(rest);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ParseError(format!(
                "expected exactly 5 fields, found {}: {text}",
                fields.len()
            )));
        }
        let (minute, _) = field(fields[0], 0, 59, &[])?;
        let (hour, _) = field(fields[1], 0, 23, &[])?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[])?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS)?;
        Ok(Schedule::Fields(Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        }))
    }
}

fn descriptor(name: &str) -> Result<Schedule, ParseError> {
    let standard = match name {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => {
            let Some(every) = name.strip_prefix("every ") else {
                return Err(ParseError(format!("unrecognized descriptor: @{name}")));
            };
            let span: Span = every
                .trim()
                .parse()
                .map_err(|e| ParseError(format!("failed to parse duration @{name}: {e}")))?;
            let seconds = span
                .total(jiff::Unit::Second)
                .map_err(|e| ParseError(format!("failed to parse duration @{name}: {e}")))?;
            // robfig rounds intervals below a second up to one second.
            return Ok(Schedule::Every(Duration::from_secs_f64(seconds.max(1.0))));
        }
    };
    standard.parse()
}

/// One field: the bits it allows and whether it was a plain `*`/`?`.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), ParseError> {
    let mut bits = 0;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (mut low, mut high, all) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, min)?, value(b, names, min)?, false)
        } else {
            let v = value(range, names, min)?;
            (v, v, false)
        };
        let step = match step {
            None => 1,
            Some(s) => {
                let s: u32 = s
                    .parse()
                    .map_err(|_| ParseError(format!("failed to parse int from {s}")))?;
                // robfig: "N/step" means N through the maximum.
                if !all && !range.contains('-') {
                    high = max;
                }
                s
            }
        };
        if all && step == 1 {
            star = true;
        }
        if low < min || high > max || low > high {
            return Err(ParseError(format!(
                "{part}: values must be within {min}-{max}, start <= end"
            )));
        }
        if step == 0 {
            return Err(ParseError(format!(
                "step of range should be a positive number: {part}"
            )));
        }
        while low <= high {
            bits |= 1 << low;
            low += step;
        }
    }
    Ok((bits, star))
}

fn value(text: &str, names: &[&str], first: u32) -> Result<u32, ParseError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + first);
    }
    text.parse()
        .map_err(|_| ParseError(format!("failed to parse int from {text}")))
}

impl Schedule {
    /// The first activation strictly after `after`, in `tz`'s wall clock.
    pub fn next(&self, after: Timestamp, tz: &jiff::tz::TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(every) => {
                // robfig: the next whole second after `after + every`.
                let t = after.checked_add(*every).ok()?;
                Timestamp::from_second(t.as_second()).ok()
            }
            Schedule::Fields(f) => f.next(after, tz),
        }
    }
}

impl Fields {
    fn next(&self, after: Timestamp, tz: &jiff::tz::TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(after);
        // The next whole minute.
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let give_up = t.year() + 5;
        while t.year() <= give_up {
            if !has(self.month, t.month()) {
                t = DateTime::new(t.year(), t.month(), 1, 0, 0, 0, 0)
                    .ok()?
                    .checked_add(1.month())
                    .ok()?;
            } else if !self.day_matches(t) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(Default::default());
            } else if !has(self.hour, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
            } else if !has(self.minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
            } else {
                let at = tz.to_ambiguous_zoned(t).compatible().ok()?.timestamp();
                // A wall time repeated by a DST change must not fire before `after`.
                if at > after {
                    return Some(at);
                }
                t = t.checked_add(1.minute()).ok()?;
            }
        }
        None
    }

    fn day_matches(&self, t: DateTime) -> bool {
        let dom = has(self.dom, t.day());
        let dow = has(self.dow, t.weekday().to_sunday_zero_offset());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn has(bits: u64, value: i8) -> bool {
    value >= 0 && bits & (1 << value) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).unwrap();
        let s: Schedule = schedule.parse().unwrap();
        s.next(ts(after), &tz).unwrap().to_string()
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:07:30Z", "UTC"),
            "2024-01-01T00:15:00Z"
        );
        assert_eq!(
            next("*/1 * * * *", "2024-01-01T00:07:00Z", "UTC"),
            "2024-01-01T00:08:00Z"
        );
        assert_eq!(
            next("5,10-12 * * * *", "2024-01-01T00:10:00Z", "UTC"),
            "2024-01-01T00:11:00Z"
        );
        assert_eq!(
            next("0 9 * JAN-MAR MON-fri", "2024-01-06T10:00:00Z", "UTC"),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next("30 2 1 * *", "2024-01-01T03:00:00Z", "UTC"),
            "2024-02-01T02:30:00Z"
        );
        // robfig: "5/20" is 5, 25, 45.
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T00:26:00Z", "UTC"),
            "2024-01-01T00:45:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2023-03-01T00:00:00Z", "UTC"),
            "2024-02-29T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 13th, or any Friday.
        assert_eq!(
            next("0 0 13 * 5", "2024-09-01T00:00:00Z", "UTC"),
            "2024-09-06T00:00:00Z"
        );
        // With a star in one of them, both must hold.
        assert_eq!(
            next("0 0 13 * *", "2024-09-01T00:00:00Z", "UTC"),
            "2024-09-13T00:00:00Z"
        );
        assert_eq!(
            next("0 0 ? * 5", "2024-09-07T00:00:00Z", "UTC"),
            "2024-09-13T00:00:00Z"
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next("@hourly", "2024-01-01T00:07:00Z", "UTC"),
            "2024-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T00:07:00Z", "UTC"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:07:00Z", "UTC"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-01T00:07:00Z", "UTC"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-01-01T00:07:00Z", "UTC"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 90m", "2024-01-01T00:07:00Z", "UTC"),
            "2024-01-01T01:37:00Z"
        );
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            next("0 9 * * *", "2024-01-01T01:00:00Z", "Asia/Tokyo"),
            "2024-01-02T00:00:00Z"
        );
        // New York on the day DST starts: 02:30 does not exist and runs at 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "2024-03-10T05:00:00Z", "America/New_York"),
            "2024-03-10T07:30:00Z"
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "@fortnightly",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }
}

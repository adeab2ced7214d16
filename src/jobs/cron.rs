//! Cron expressions (UTC): 5 fields, or 6 with seconds first. Parsed once, by [`CronExpr`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A valid cron expression. Constructing one is the only validation.
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
        Ok(CronExpr {
            text: text.trim().to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The latest slot at or before `at_ms` (ms since the epoch).
    pub fn latest_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let at = to_datetime(at_ms)?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The first slot strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let at = to_datetime(after_ms)?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// Slots in `(after_ms, until_ms]`, oldest first, at most `max`.
    pub fn slots_between(&self, after_ms: i64, until_ms: i64, max: usize) -> Vec<i64> {
        let mut slots = Vec::new();
        let mut cursor = after_ms;
        while slots.len() < max {
            match self.next_after(cursor) {
                Some(slot) if slot <= until_ms => {
                    slots.push(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        slots
    }
}

fn to_datetime(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

impl FromStr for CronExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronExpr::parse(s)
    }
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for CronExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CronExpr::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T10:30:15Z
    const T: i64 = 1_795_343_415_000;

    #[test]
    fn five_fields_are_minutes_and_six_add_seconds() {
        let hourly = CronExpr::parse("0 * * * *").unwrap();
        assert_eq!(hourly.latest_at_or_before(T), Some(1_795_341_600_000)); // 10:00:00
        assert_eq!(hourly.next_after(T), Some(1_795_345_200_000)); // 11:00:00
        let every_second = CronExpr::parse("* * * * * *").unwrap();
        assert_eq!(every_second.latest_at_or_before(T), Some(T));
        assert_eq!(every_second.next_after(T), Some(T + 1000));
    }

    #[test]
    fn a_slot_time_is_its_own_latest_slot() {
        let daily = CronExpr::parse("0 3 * * *").unwrap();
        let slot = daily.latest_at_or_before(T).unwrap();
        assert_eq!(daily.latest_at_or_before(slot), Some(slot));
        assert_eq!(daily.next_after(slot), Some(slot + 86_400_000));
    }

    #[test]
    fn slots_between_is_half_open_and_bounded() {
        let minutely = CronExpr::parse("* * * * *").unwrap();
        let start = minutely.latest_at_or_before(T).unwrap();
        let slots = minutely.slots_between(start, start + 5 * 60_000, 100);
        assert_eq!(slots.len(), 5);
        assert_eq!(slots[0], start + 60_000);
        assert_eq!(slots[4], start + 5 * 60_000);
        assert_eq!(minutely.slots_between(start, start + 600_000, 3).len(), 3);
    }

    #[test]
    fn bad_expressions_are_refused_with_the_text() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "every minute"] {
            let err = CronExpr::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}

//! Recovery nudges as pure rules: the cadence (which step of a case is due), which copy variant
//! a case gets at a step, and when quiet hours in the app's time zone let a nudge go.

use chrono::{Duration, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;

/// The cadence of an app that sets none: at the first failure, then after 1, 3 and 7 days.
pub const DEFAULT_STEPS_HOURS: [u32; 4] = [0, 24, 72, 168];

const HOUR_MS: i64 = 3_600_000;

/// What the sweep does for one open case: the step to make now, and the earlier steps that
/// never went out and are skipped (a case seen late gets its latest due nudge only, not a burst).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub step: usize,
    pub skipped: Vec<usize>,
}

/// The latest step whose time (`first_failure_at` + its hours) has come by `now` and that has
/// no row yet (`made`: the steps already made, in any state). `None`: nothing to make — no step
/// is due, or the latest due one exists (a later sweep makes the next).
pub fn due_step(
    steps_hours: &[u32],
    first_failure_at: i64,
    now: i64,
    made: &[usize],
) -> Option<Due> {
    let latest = steps_hours
        .iter()
        .rposition(|h| first_failure_at.saturating_add(*h as i64 * HOUR_MS) <= now)?;
    if made.contains(&latest) {
        return None;
    }
    let skipped = (0..latest).filter(|s| !made.contains(s)).collect();
    Some(Due {
        step: latest,
        skipped,
    })
}

/// When step `step` of a case is due.
pub fn due_at(steps_hours: &[u32], first_failure_at: i64, step: usize) -> i64 {
    first_failure_at.saturating_add(steps_hours[step] as i64 * HOUR_MS)
}

/// The variant (an index into `weights`) a case gets at a step: weighted, and the same every
/// time it is asked (a function of the case and step), so a retry never changes the copy.
/// Weights of zero are never picked; all zero picks the first.
pub fn pick_variant(weights: &[u32], case_id: i64, step: usize) -> usize {
    let total: u64 = weights.iter().map(|w| *w as u64).sum();
    if total == 0 {
        return 0;
    }
    let mut x = (case_id as u64) ^ ((step as u64) << 48) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64: consecutive case ids spread evenly over the weights.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut point = x % total;
    for (i, w) in weights.iter().enumerate() {
        if point < *w as u64 {
            return i;
        }
        point -= *w as u64;
    }
    weights.len() - 1
}

/// Local hours `[start, end)` in which nothing is sent; `start > end` wraps past midnight
/// (22 → 8 is the night).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: u32,
    pub end: u32,
}

impl QuietHours {
    fn covers(self, hour: u32) -> bool {
        if self.start <= self.end {
            hour >= self.start && hour < self.end
        } else {
            hour >= self.start || hour < self.end
        }
    }
}

/// The earliest moment at or after `at` (ms) outside the quiet hours in `tz`: `at` itself when
/// it is not quiet, else the next local `end:00`. A local time that a daylight-saving jump
/// skips is taken at the first moment after the jump.
pub fn send_after(at: i64, tz: Tz, quiet: Option<QuietHours>) -> i64 {
    let Some(q) = quiet.filter(|q| q.start != q.end) else {
        return at;
    };
    let Some(utc) = chrono::DateTime::from_timestamp_millis(at) else {
        return at;
    };
    let local = utc.with_timezone(&tz);
    if !q.covers(local.hour()) {
        return at;
    }
    let end = NaiveTime::from_hms_opt(q.end, 0, 0).expect("an hour of the day");
    let mut day = local.date_naive();
    if local.hour() >= q.end {
        day = day.succ_opt().unwrap_or(day);
    }
    let naive = day.and_time(end);
    let resolved = tz.from_local_datetime(&naive).earliest().or_else(|| {
        tz.from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
    });
    resolved.map_or(at, |t| t.timestamp_millis().max(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn the_latest_due_step_is_made_and_earlier_missing_ones_skipped() {
        let steps = DEFAULT_STEPS_HOURS;
        assert_eq!(
            due_step(&steps, T0, T0, &[]),
            Some(Due {
                step: 0,
                skipped: vec![]
            })
        );
        assert_eq!(due_step(&steps, T0, T0 + 23 * HOUR_MS, &[0]), None);
        assert_eq!(
            due_step(&steps, T0, T0 + 24 * HOUR_MS, &[0]),
            Some(Due {
                step: 1,
                skipped: vec![]
            })
        );
        assert_eq!(
            due_step(&steps, T0, T0 + 80 * HOUR_MS, &[]),
            Some(Due {
                step: 2,
                skipped: vec![0, 1]
            }),
            "a case seen late gets one nudge, not three"
        );
        assert_eq!(due_step(&steps, T0, T0 - 1, &[]), None);
        assert_eq!(
            due_step(&steps, T0, T0 + 1000 * HOUR_MS, &[0, 1, 2, 3]),
            None
        );
    }

    #[test]
    fn variants_follow_their_weights_and_never_change_for_a_case() {
        let mut counts = [0; 3];
        for case in 1..=3000 {
            counts[pick_variant(&[1, 2, 0], case, 1)] += 1;
            assert_eq!(
                pick_variant(&[1, 2, 0], case, 1),
                pick_variant(&[1, 2, 0], case, 1)
            );
        }
        assert_eq!(counts[2], 0, "a zero weight is never picked");
        assert!((900..1100).contains(&counts[0]), "{counts:?}");
        assert!((1900..2100).contains(&counts[1]), "{counts:?}");
        assert_eq!(pick_variant(&[0, 0], 5, 0), 0);
    }

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        tz.with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn quiet_hours_hold_a_nudge_until_they_end_in_the_apps_time_zone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let night = Some(QuietHours { start: 22, end: 8 });
        let noon = at(tz, 2026, 12, 2, 12, 0);
        assert_eq!(send_after(noon, tz, night), noon);
        assert_eq!(
            send_after(at(tz, 2026, 12, 2, 23, 30), tz, night),
            at(tz, 2026, 12, 3, 8, 0)
        );
        assert_eq!(
            send_after(at(tz, 2026, 12, 3, 3, 0), tz, night),
            at(tz, 2026, 12, 3, 8, 0)
        );
        assert_eq!(send_after(noon, tz, None), noon);
        // 18:00 in New York is 23:00 UTC: quiet in UTC, not in New York.
        let evening = at(tz, 2026, 12, 2, 18, 0);
        assert_eq!(send_after(evening, tz, night), evening);
        let utc = chrono_tz::UTC;
        assert_eq!(send_after(evening, utc, night), at(utc, 2026, 12, 3, 8, 0));
        let day = Some(QuietHours { start: 9, end: 17 });
        assert_eq!(send_after(noon, tz, day), at(tz, 2026, 12, 2, 17, 0));
    }

    #[test]
    fn a_quiet_end_skipped_by_daylight_saving_is_the_first_moment_after_it() {
        // Europe/Berlin skips 02:00–03:00 on 2026-03-29.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let q = Some(QuietHours { start: 0, end: 2 });
        let one = at(tz, 2026, 3, 29, 1, 0);
        assert_eq!(send_after(one, tz, q), at(tz, 2026, 3, 29, 3, 0));
    }
}

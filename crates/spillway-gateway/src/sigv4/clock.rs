//! Signing times: `X-Amz-Date` (`YYYYMMDD'T'HHMMSS'Z'`) to and from seconds since the Unix
//! epoch, with the civil-date arithmetic done here (no date crate), and the 5-minute clock-skew
//! check.
use std::time::{SystemTime, UNIX_EPOCH};

use super::{MAX_SKEW_SECS, SigV4Error};

/// Rejects a signing time more than 5 minutes away from now.
pub(super) fn check_time(
    signed_at: u64,
    now: SystemTime,
    amz_date: &str,
) -> Result<(), SigV4Error> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (min, max) = (
        now.saturating_sub(MAX_SKEW_SECS),
        now.saturating_add(MAX_SKEW_SECS),
    );
    if (min..=max).contains(&signed_at) {
        return Ok(());
    }
    let date = amz_date.to_owned();
    Err(SigV4Error::ClockSkew {
        date,
        min: format_amz_date(min),
        max: format_amz_date(max),
    })
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'` into seconds since the Unix epoch.
pub(super) fn parse_amz_date(s: &str) -> Option<u64> {
    let shape_ok = s.len() == 16 && s.get(8..9) == Some("T") && s.get(15..) == Some("Z");
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = s
            .get(from..to)
            .filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?;
        digits.parse().ok()
    };
    let (year, month, day) = (i64::from(num(0, 4)?), num(4, 6)?, num(6, 8)?);
    let (hour, minute, second) = (
        u64::from(num(9, 11)?),
        u64::from(num(11, 13)?),
        u64::from(num(13, 15)?),
    );
    let days = days_from_civil(year, month, day);
    let valid_date = (1..=12).contains(&month) && civil_from_days(days) == (year, month, day);
    if !shape_ok || !valid_date || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats seconds since the Unix epoch as `YYYYMMDD'T'HHMMSS'Z'`.
pub(super) fn format_amz_date(secs: u64) -> String {
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2));
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let (era, month) = (year.div_euclid(400), i64::from(month));
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month, day)`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

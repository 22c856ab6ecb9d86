//! Timestamps as people write them, into Unix milliseconds, refusing the ones that are
//! probably in another unit instead of reading them wrong.

use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The unit of integer timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeUnit {
    /// Seconds since 1970-01-01 UTC.
    Seconds,
    /// Milliseconds (the default, and keel's internal unit).
    #[default]
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl TimeUnit {
    const ALL: [TimeUnit; 4] = [
        TimeUnit::Seconds,
        TimeUnit::Millis,
        TimeUnit::Micros,
        TimeUnit::Nanos,
    ];

    /// The short name: `s`, `ms`, `us`, `ns`.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Millis => "ms",
            TimeUnit::Micros => "us",
            TimeUnit::Nanos => "ns",
        }
    }

    fn long_name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Micros => "microseconds",
            TimeUnit::Nanos => "nanoseconds",
        }
    }

    /// Milliseconds of an integer in this unit (rounded toward minus infinity).
    pub fn to_millis(self, v: i64) -> i64 {
        match self {
            TimeUnit::Seconds => v.saturating_mul(1000),
            TimeUnit::Millis => v,
            TimeUnit::Micros => v.div_euclid(1000),
            TimeUnit::Nanos => v.div_euclid(1_000_000),
        }
    }
}

impl std::str::FromStr for TimeUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TimeUnit::ALL
            .into_iter()
            .find(|u| u.name() == s || u.long_name() == s)
            .ok_or_else(|| format!("unknown time unit `{s}` (s, ms, us, ns)"))
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Integer timestamps are accepted from 1975-01-01 up to (not including) 2200-01-01: outside
/// that window a value is far more likely in another unit than a real event time.
pub const PLAUSIBLE_MS: std::ops::Range<i64> = 157_766_400_000..7_258_118_400_000;

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// An integer outside [`PLAUSIBLE_MS`] in the declared unit.
    #[error("{value} as {unit} is {when}, outside 1975..2200{hint}")]
    Implausible {
        /// The integer.
        value: i64,
        /// The declared unit.
        unit: TimeUnit,
        /// Roughly when that is, for the message.
        when: String,
        /// `; looks like seconds: use --time-unit s` when another unit fits.
        hint: String,
    },
    /// Neither an integer nor RFC 3339.
    #[error("`{0}` is neither an integer nor an RFC 3339 time (2026-01-31T12:00:00+05:00)")]
    Syntax(String),
}

/// Parses a timestamp into Unix milliseconds: an integer in `unit` (refused with a hint when
/// it lies outside [`PLAUSIBLE_MS`], e.g. seconds read as milliseconds), or RFC 3339 with any
/// offset (`Z`, `+05:00`; fractions of a second kept to the millisecond). A date-time without
/// an offset (`2026-01-31 12:00:00`) is read as UTC.
pub fn parse_timestamp_ms(text: &str, unit: TimeUnit) -> Result<i64, TimestampError> {
    let t = text.trim();
    if let Ok(v) = t.parse::<i64>() {
        let ms = unit.to_millis(v);
        if PLAUSIBLE_MS.contains(&ms) {
            return Ok(ms);
        }
        let hint = TimeUnit::ALL
            .into_iter()
            .find(|u| PLAUSIBLE_MS.contains(&u.to_millis(v)))
            .map_or(String::new(), |u| {
                format!(
                    "; looks like {}: use --time-unit {}",
                    u.long_name(),
                    u.name()
                )
            });
        return Err(TimestampError::Implausible {
            value: v,
            unit,
            when: describe_ms(ms),
            hint,
        });
    }
    let parsed = OffsetDateTime::parse(t, &Rfc3339).or_else(|_| {
        // No offset: UTC. Accept a space for the `T`.
        let with_z = format!("{}Z", t.replacen(' ', "T", 1));
        OffsetDateTime::parse(&with_z, &Rfc3339)
    });
    match parsed {
        Ok(dt) => {
            let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
            i64::try_from(ms).map_err(|_| TimestampError::Syntax(truncate(t)))
        }
        Err(_) => Err(TimestampError::Syntax(truncate(t))),
    }
}

/// Writes Unix milliseconds as RFC 3339 in UTC with millisecond precision
/// (`2026-01-31T12:00:00.250Z`); the inverse of [`parse_timestamp_ms`] for UTC times.
pub fn format_timestamp_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(dt) => {
            let (date, time) = (dt.date(), dt.time());
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                date.year(),
                u8::from(date.month()),
                date.day(),
                time.hour(),
                time.minute(),
                time.second(),
                time.millisecond()
            )
        }
        Err(_) => ms.to_string(),
    }
}

fn describe_ms(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(dt) => format!("year {}", dt.year()),
        Err(_) => "out of range".into(),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_offsets_and_hints() {
        let ms = 1_769_189_814_000;
        assert_eq!(
            parse_timestamp_ms("1769189814000", TimeUnit::Millis),
            Ok(ms)
        );
        assert_eq!(parse_timestamp_ms("1769189814", TimeUnit::Seconds), Ok(ms));
        assert_eq!(
            parse_timestamp_ms("1769189814000000", TimeUnit::Micros),
            Ok(ms)
        );
        let e = parse_timestamp_ms("1769189814", TimeUnit::Millis).unwrap_err();
        assert!(
            e.to_string()
                .contains("looks like seconds: use --time-unit s"),
            "{e}"
        );
        let e = parse_timestamp_ms("1769189814000000", TimeUnit::Millis).unwrap_err();
        assert!(e.to_string().contains("use --time-unit us"), "{e}");
        // Offsets: the same instant three ways.
        let z = parse_timestamp_ms("2026-01-23T17:36:54Z", TimeUnit::Millis).unwrap();
        assert_eq!(z, ms);
        assert_eq!(
            parse_timestamp_ms("2026-01-23T22:36:54+05:00", TimeUnit::Millis),
            Ok(ms)
        );
        assert_eq!(
            parse_timestamp_ms("2026-01-23 17:36:54", TimeUnit::Millis),
            Ok(ms)
        );
        assert_eq!(
            parse_timestamp_ms("2026-01-23T17:36:54.250-00:00", TimeUnit::Millis),
            Ok(ms + 250)
        );
        assert!(matches!(
            parse_timestamp_ms("yesterday", TimeUnit::Millis),
            Err(TimestampError::Syntax(_))
        ));
        assert_eq!(format_timestamp_ms(ms + 250), "2026-01-23T17:36:54.250Z");
    }
}

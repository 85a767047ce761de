//! Calendar arithmetic and timestamps, on the `time` crate: RFC 3339 for the API, the UTC
//! (year, month) of an instant, and billing periods (a calendar month or year later, clamped
//! to the end of a shorter month). Instants are Unix milliseconds, as everywhere in the stores.

use time::{Date, Duration, Month, OffsetDateTime};

pub use events::rfc3339;

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms)
}

/// The (year, month) of a Unix-ms instant, in UTC.
pub fn civil_year_month(ms: i64) -> (u32, u32) {
    let at = at(ms);
    (at.year().max(0) as u32, u32::from(u8::from(at.month())))
}

/// How often a package is billed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Seven days.
    Week,
    /// The same day and time one calendar month later.
    Month,
    /// The same day and time one calendar year later.
    Year,
}

impl Period {
    /// `week`, `month` or `year`, as packages store it and events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// The name read back; `None` for any other.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Week, Self::Month, Self::Year]
            .into_iter()
            .find(|period| period.as_str() == name)
    }
}

/// `ms` plus one billing period: 7 days for `week`; the same day and time one calendar month
/// or year later for `month` and `year`, clamped to the end of a shorter month (31 January
/// plus a month is 28 or 29 February). `None` for an unknown period name.
pub fn add_period(ms: i64, period: &str) -> Option<i64> {
    let months = match Period::parse(period)? {
        Period::Week => return Some(ms + 7 * 86_400_000),
        Period::Month => 1,
        Period::Year => 12,
    };
    let start = at(ms);
    let index = start.year() * 12 + i32::from(u8::from(start.month())) - 1 + months;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    let month = Month::try_from(month as u8).ok()?;
    let day = start.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let end = start.replace_date(date);
    i64::try_from(end.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(year: i32, month: u8, day: u8, hour: u8) -> i64 {
        let date = Date::from_calendar_date(year, Month::try_from(month).unwrap(), day).unwrap();
        let at = date.with_hms(hour, 0, 0).unwrap().assume_utc();
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn year_and_month_are_utc() {
        assert_eq!(civil_year_month(ms(2026, 11, 28, 7)), (2026, 11));
        assert_eq!(civil_year_month(0), (1970, 1));
        assert_eq!(civil_year_month(ms(2024, 2, 29, 23)), (2024, 2));
    }

    #[test]
    fn periods_follow_the_calendar() {
        for (from, period, to) in [
            (ms(2026, 1, 15, 10), "month", ms(2026, 2, 15, 10)),
            (ms(2026, 1, 31, 10), "month", ms(2026, 2, 28, 10)),
            (ms(2024, 1, 31, 0), "month", ms(2024, 2, 29, 0)),
            (ms(2026, 12, 31, 23), "month", ms(2027, 1, 31, 23)),
            (ms(2024, 2, 29, 5), "year", ms(2025, 2, 28, 5)),
            (ms(2026, 3, 1, 0), "week", ms(2026, 3, 8, 0)),
            (
                ms(2026, 3, 1, 0) + 1_234,
                "month",
                ms(2026, 4, 1, 0) + 1_234,
            ),
        ] {
            assert_eq!(add_period(from, period), Some(to), "{period} after {from}");
        }
        assert_eq!(add_period(0, "fortnight"), None);
        assert_eq!(Period::parse("year"), Some(Period::Year));
        assert_eq!(Period::Month.as_str(), "month");
    }
}

//! When a free-tier listener hears an ad: a pure decision over their listening clock (track
//! time heard, kept from their play events) and the ads served in the last hour.
//!
//! A package with N ads per hour gets one break every 60/N minutes of listening, the first
//! before the first track of a session, and never more than N breaks in any rolling hour of
//! wall time; a package with no ads gets none.
use super::store::Listening;

/// One hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Why a break is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakReason {
    /// The first play of a listening session.
    SessionStart,
    /// 60/N minutes of listening since the last break.
    Interval,
}

impl BreakReason {
    /// `session-start` or `interval` (stored with the impression).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStart => "session-start",
            Self::Interval => "interval",
        }
    }
}

/// Whether the play starting at `now_ms` gets an ad break: `per_hour` ads per hour of listening,
/// `served_last_hour` breaks already served in the hour before `now_ms`, a session ending after
/// `session_idle_ms` without a play.
pub fn ad_break(
    per_hour: i64,
    listening: &Listening,
    served_last_hour: i64,
    now_ms: i64,
    session_idle_ms: i64,
) -> Option<BreakReason> {
    if per_hour <= 0 || served_last_hour >= per_hour {
        return None;
    }
    let new_session = listening
        .last_play_at
        .is_none_or(|at| now_ms.saturating_sub(at) > session_idle_ms);
    if new_session {
        return Some(BreakReason::SessionStart);
    }
    let interval = HOUR_MS / per_hour;
    match listening.last_break_at_ms {
        Some(at) if listening.listened_ms - at < interval => None,
        _ => Some(BreakReason::Interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: i64 = 30 * 60 * 1000;
    const MIN: i64 = 60_000;

    #[test]
    fn a_paid_package_never_hears_ads() {
        let fresh = Listening::default();
        assert_eq!(ad_break(0, &fresh, 0, 0, IDLE), None);
    }

    #[test]
    fn the_first_play_of_a_session_gets_a_break() {
        let fresh = Listening::default();
        assert_eq!(
            ad_break(4, &fresh, 0, 0, IDLE),
            Some(BreakReason::SessionStart)
        );
        // After a long pause, a new session starts with a break again.
        let paused = Listening {
            listened_ms: 20 * MIN,
            last_break_at_ms: Some(10 * MIN),
            last_play_at: Some(0),
        };
        assert_eq!(
            ad_break(4, &paused, 1, 31 * MIN, IDLE),
            Some(BreakReason::SessionStart)
        );
    }

    #[test]
    fn breaks_come_every_sixty_over_n_minutes_of_listening() {
        let mut listening = Listening {
            listened_ms: 0,
            last_break_at_ms: Some(0),
            last_play_at: Some(0),
        };
        let mut now = 0;
        let mut breaks = vec![0];
        // Three-minute tracks for two hours of listening, four ads per hour.
        while listening.listened_ms < 2 * 60 * MIN {
            listening.listened_ms += 3 * MIN;
            now += 3 * MIN;
            listening.last_play_at = Some(now);
            if ad_break(4, &listening, 0, now, IDLE).is_some() {
                breaks.push(listening.listened_ms);
                listening.last_break_at_ms = Some(listening.listened_ms);
            }
        }
        assert_eq!(breaks.len(), 9, "{breaks:?}");
        for pair in breaks.windows(2) {
            assert!(pair[1] - pair[0] >= 15 * MIN && pair[1] - pair[0] < 18 * MIN);
        }
    }

    #[test]
    fn never_more_than_n_in_a_rolling_hour() {
        // A listener who keeps starting sessions still hears at most N per hour.
        let listening = Listening {
            listened_ms: MIN,
            last_break_at_ms: Some(0),
            last_play_at: Some(0),
        };
        assert_eq!(ad_break(2, &listening, 2, 40 * MIN, IDLE), None);
        assert_eq!(
            ad_break(2, &listening, 1, 40 * MIN, IDLE),
            Some(BreakReason::SessionStart)
        );
    }

    #[test]
    fn within_a_session_no_break_before_the_interval() {
        let listening = Listening {
            listened_ms: 14 * MIN,
            last_break_at_ms: Some(0),
            last_play_at: Some(14 * MIN),
        };
        assert_eq!(ad_break(4, &listening, 1, 15 * MIN, IDLE), None);
        let later = Listening {
            listened_ms: 15 * MIN,
            ..listening
        };
        assert_eq!(
            ad_break(4, &later, 1, 16 * MIN, IDLE),
            Some(BreakReason::Interval)
        );
    }
}

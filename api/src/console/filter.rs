//! The events filter as people type it (`events list`): dates in the console's zone
//! (`admin.time_zone`) or RFC 3339, empty values meaning "any", bounded page sizes.

use mlc_service::console::{ConsoleError, parse_time};
use mlc_store::EventFilter;

/// Filters of an events list; empty values mean "any".
#[derive(Debug, Default)]
pub struct EventsQuery {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub stripe_id: Option<String>,
    pub netsuite_id: Option<String>,
    /// Received at or after: `YYYY-MM-DD` (in the console's zone) or an RFC 3339 time.
    pub since: Option<String>,
    /// Received before: same formats; a date means the start of that day.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl EventsQuery {
    pub fn to_filter(&self, tz: &jiff::tz::TimeZone) -> Result<EventFilter, ConsoleError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let time = |v: &Option<String>, name: &str| {
            nonempty(v)
                .map(|s| {
                    parse_time(&s, tz).map_err(|e| ConsoleError::BadRequest(format!("{name}: {e}")))
                })
                .transpose()
        };
        if let Some(l) = self.limit.filter(|l| !(1..=1000).contains(l)) {
            return Err(ConsoleError::BadRequest(format!(
                "limit must be 1 to 1000, not {l}"
            )));
        }
        if let Some(o) = self.offset.filter(|o| !(0..=1_000_000_000).contains(o)) {
            return Err(ConsoleError::BadRequest(format!(
                "offset must be 0 to 1000000000, not {o}"
            )));
        }
        Ok(EventFilter {
            status: nonempty(&self.status),
            event_type: nonempty(&self.event_type),
            stripe_id: nonempty(&self.stripe_id),
            netsuite_id: nonempty(&self.netsuite_id),
            received_after: time(&self.since, "since")?,
            received_before: time(&self.until, "until")?,
            limit: self.limit.unwrap_or(50).clamp(1, 1000),
            offset: self.offset.unwrap_or(0).max(0),
            after: None,
        })
    }
}

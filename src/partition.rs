//! Partitions: hourly, daily, monthly, value and file partitionings, their
//! keys, the latest complete partition in a time zone, and inclusive ranges
//! for backfills.
//!
//! Time partitions are cut by the calendar of their zone (IANA, default
//! UTC): a day is a civil day there, and hours follow its clocks, so a
//! spring-forward day has 23 hourly partitions and a fall-back day 25. An
//! hourly key is the local `YYYY-MM-DDTHH`; the two hours that share a
//! local time when clocks go back carry their UTC offset as well
//! (`2025-10-26T02+02:00`, then `2025-10-26T02+01:00`).

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// A time zone, with the name it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl Zone {
    /// UTC, the default.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone of an IANA name (`Europe/Berlin`), from the bundled database.
    pub fn named(name: &str) -> Result<Zone, PartitionError> {
        TimeZone::get(name)
            .map(|tz| Zone {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| PartitionError::UnknownZone(name.to_owned()))
    }
}

/// A zone is kept as its name (the saved project).
impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        if name == "UTC" {
            return Ok(Zone::utc());
        }
        Zone::named(&name).map_err(serde::de::Error::custom)
    }
}

/// How a task is partitioned, as validated from `partitions = {...}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartitionSpec {
    /// One instance per hour of the zone's clock, keys `YYYY-MM-DDTHH`.
    Hourly {
        start: Timestamp,
        end: Option<Timestamp>,
        zone: Zone,
    },
    /// One instance per day, keys `YYYY-MM-DD`.
    Daily {
        start: Date,
        end: Option<Date>,
        zone: Zone,
    },
    /// One instance per month, keys `YYYY-MM`; dates are the first of the month.
    Monthly {
        start: Date,
        end: Option<Date>,
        zone: Zone,
    },
    /// One instance per listed value, in the order declared.
    Values(Vec<String>),
    /// One instance per stem of the files a glob (relative to the project
    /// root) matches now; see [`PartitionSpec::with_files`].
    Files(String),
}

/// The kind of a partitioning, for checking dependencies fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Hourly,
    Daily,
    Monthly,
    Values,
    Files,
}

impl PartitionKind {
    /// Whether it is a calendar partitioning (hours, days, months).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            PartitionKind::Hourly | PartitionKind::Daily | PartitionKind::Monthly
        )
    }
}

impl std::fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionKind::Hourly => "hourly",
            PartitionKind::Daily => "daily",
            PartitionKind::Monthly => "monthly",
            PartitionKind::Values => "values",
            PartitionKind::Files => "files",
        })
    }
}

/// What time it is for the partitions: `HOTPASS_NOW` (an instant),
/// `HOTPASS_TODAY` (a date: it is midnight of that day, in each zone), or
/// the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Today(Date),
    Now(Timestamp),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Now(Timestamp::now())
    }
}

impl Clock {
    /// Today's date in `zone`.
    fn date_in(&self, zone: &Zone) -> Date {
        match self {
            Clock::Today(d) => *d,
            Clock::Now(t) => t.to_zoned_datetime(zone.tz.clone()).date(),
        }
    }

    /// The instant it is, in `zone` (for a date: its first moment there).
    fn now_in(&self, zone: &Zone) -> Result<Timestamp, PartitionError> {
        match self {
            Clock::Today(d) => d
                .to_zoned_datetime(zone.tz.clone())
                .and_then(|z| z.start_of_day())
                .map(|z| z.timestamp())
                .map_err(out_of_range),
            Clock::Now(t) => Ok(*t),
        }
    }
}

/// Why a partition key, range or date is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// Not written as `YYYY-MM-DD`.
    #[error("`{0}` is not a date in the form YYYY-MM-DD")]
    NotADay(String),
    /// Written as a date, but there is no such day.
    #[error("`{0}` is not a valid date (YYYY-MM-DD)")]
    InvalidDay(String),
    /// Not written as `YYYY-MM`, or no such month.
    #[error("`{0}` is not a month in the form YYYY-MM")]
    NotAMonth(String),
    /// Not one of a `values` partitioning's values.
    #[error("`{key}` is not one of its values ({values})")]
    NotAValue { key: String, values: String },
    /// Before the partitioning's `start`.
    #[error("`{key}` is before the task's first partition {first}")]
    BeforeStart { key: String, first: String },
    /// After the partitioning's `end`.
    #[error("`{key}` is after the task's last partition {last}")]
    AfterEnd { key: String, last: String },
    /// The latest complete partition would be before the first one.
    #[error("its first partition {0} is not complete yet")]
    NotComplete(String),
    /// A range whose start comes after its end.
    #[error("the range {from}..{to} is reversed ({why})")]
    Reversed {
        from: String,
        to: String,
        why: &'static str,
    },
    /// Not written as `FROM..TO`.
    #[error("`{0}` is not a range: write FROM..TO, e.g. 2025-01-01..2025-01-31")]
    NotARange(String),
    /// `HOTPASS_TODAY` is not a date.
    #[error("HOTPASS_TODAY: {0}")]
    Today(Box<PartitionError>),
    /// A date beyond what the calendar can represent.
    #[error("the date is out of range: {0}")]
    OutOfRange(String),
    /// Not written as `YYYY-MM-DDTHH` (with an offset for a repeated hour).
    #[error("`{0}` is not an hour in the form YYYY-MM-DDTHH")]
    NotAnHour(String),
    /// An hour the zone's clocks skip (spring forward).
    #[error("`{key}` does not exist in {zone}: the clocks skip that hour")]
    SkippedHour { key: String, zone: String },
    /// An hour the zone's clocks pass twice (fall back), written without
    /// saying which.
    #[error("`{key}` happens twice in {zone}: write {first} or {second}")]
    RepeatedHour {
        key: String,
        zone: String,
        first: String,
        second: String,
    },
    /// Not an IANA time zone name.
    #[error(
        "`{0}` is not a known time zone: use an IANA name such as Europe/Berlin or America/New_York"
    )]
    UnknownZone(String),
    /// `HOTPASS_NOW` is not an RFC 3339 instant.
    #[error("HOTPASS_NOW: `{0}` is not an RFC 3339 time such as 2025-03-30T14:05:00Z")]
    Now(String),
    /// The file glob of a `files` partitioning is not a glob.
    #[error("`{0}` is not a valid glob")]
    BadGlob(String),
}

fn out_of_range(e: jiff::Error) -> PartitionError {
    PartitionError::OutOfRange(e.to_string())
}

/// Parses `YYYY-MM-DD` strictly.
pub fn parse_day(s: &str) -> Result<Date, PartitionError> {
    let ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    if !ok {
        return Err(PartitionError::NotADay(s.to_owned()));
    }
    s.parse::<Date>()
        .map_err(|_| PartitionError::InvalidDay(s.to_owned()))
}

/// Parses `YYYY-MM` strictly, as the first day of that month.
pub fn parse_month(s: &str) -> Result<Date, PartitionError> {
    let ok = s.len() == 7 && s.as_bytes()[4] == b'-';
    let bad = || PartitionError::NotAMonth(s.to_owned());
    if !ok {
        return Err(bad());
    }
    let year: i16 = s[..4].parse().map_err(|_| bad())?;
    let month: i8 = s[5..].parse().map_err(|_| bad())?;
    Date::new(year, month, 1).map_err(|_| bad())
}

fn month_key(d: Date) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

fn day_key(d: Date) -> String {
    d.to_string()
}

fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}", s / 3600, s / 60 % 60)
}

const HOUR: SignedDuration = SignedDuration::from_hours(1);

/// The key of the hour starting at `t` in `zone`: the local
/// `YYYY-MM-DDTHH`, with the UTC offset when that local hour happens twice.
pub fn hour_key(t: Timestamp, zone: &Zone) -> String {
    let z = t.to_zoned_datetime(zone.tz.clone());
    let dt = z.datetime();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour()
    );
    let hour =
        DateTime::new(dt.year(), dt.month(), dt.day(), dt.hour(), 0, 0, 0).expect("a valid hour");
    match zone.tz.to_ambiguous_timestamp(hour).offset() {
        AmbiguousOffset::Fold { .. } => format!("{base}{}", offset_text(z.offset().seconds())),
        _ => base,
    }
}

/// The instant an hourly key names in `zone`.
pub fn parse_hour(key: &str, zone: &Zone) -> Result<Timestamp, PartitionError> {
    let bad = || PartitionError::NotAnHour(key.to_owned());
    let b = key.as_bytes();
    if key.len() < 13 || b[10] != b'T' || !key.is_char_boundary(13) {
        return Err(bad());
    }
    let date = parse_day(&key[..10]).map_err(|_| bad())?;
    let hour: i8 = key[11..13]
        .parse()
        .ok()
        .filter(|h| (0..24).contains(h) && key.as_bytes()[11].is_ascii_digit())
        .ok_or_else(bad)?;
    let suffix = &key[13..];
    let given: Option<i32> = match suffix {
        "" => None,
        s if s.len() == 6 && (s.starts_with('+') || s.starts_with('-')) && &s[3..4] == ":" => {
            let h: i32 = s[1..3].parse().map_err(|_| bad())?;
            let m: i32 = s[4..6].parse().map_err(|_| bad())?;
            let v = h * 3600 + m * 60;
            Some(if s.starts_with('-') { -v } else { v })
        }
        _ => return Err(bad()),
    };
    let dt = date.at(hour, 0, 0, 0);
    let at = |offset: jiff::tz::Offset| offset.to_timestamp(dt).map_err(out_of_range);
    let base = &key[..13];
    match zone.tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => match given {
            Some(g) if g != offset.seconds() => Err(bad()),
            _ => at(offset),
        },
        AmbiguousOffset::Gap { .. } => Err(PartitionError::SkippedHour {
            key: base.to_owned(),
            zone: zone.name.clone(),
        }),
        AmbiguousOffset::Fold { before, after } => match given {
            Some(g) if g == before.seconds() => at(before),
            Some(g) if g == after.seconds() => at(after),
            _ => Err(PartitionError::RepeatedHour {
                key: base.to_owned(),
                zone: zone.name.clone(),
                first: format!("{base}{}", offset_text(before.seconds())),
                second: format!("{base}{}", offset_text(after.seconds())),
            }),
        },
    }
}

/// The first instant of `day` in `zone`.
fn start_of(day: Date, zone: &Zone) -> Result<Timestamp, PartitionError> {
    day.to_zoned_datetime(zone.tz.clone())
        .and_then(|z| z.start_of_day())
        .map(|z| z.timestamp())
        .map_err(out_of_range)
}

/// The hourly keys from `from` up to (not including) `until`.
fn hours(from: Timestamp, until: Timestamp, zone: &Zone) -> Result<Vec<String>, PartitionError> {
    let mut out = Vec::new();
    let mut t = from;
    while t < until {
        out.push(hour_key(t, zone));
        t = t.checked_add(HOUR).map_err(out_of_range)?;
    }
    Ok(out)
}

/// The stems of the files `glob` (relative to `root`) matches, sorted and
/// distinct: the partitions of a `files` partitioning now.
pub fn file_stems(root: &std::path::Path, glob: &str) -> Result<Vec<String>, PartitionError> {
    let patterns = crate::fileset::Patterns::new(&[glob])
        .map_err(|_| PartitionError::BadGlob(glob.to_owned()))?;
    let found = patterns
        .expand(root, crate::fileset::Ignored::Skip, &[])
        .map_err(|e| PartitionError::BadGlob(format!("{glob}: {e}")))?;
    let mut stems: Vec<String> = found
        .iter()
        .filter_map(|f| {
            let name = std::path::Path::new(&f.rel).file_stem()?.to_str()?;
            (!name.is_empty() && !name.starts_with('.')).then(|| name.to_owned())
        })
        .collect();
    stems.sort();
    stems.dedup();
    Ok(stems)
}

impl PartitionSpec {
    /// The kind of this partitioning.
    pub fn kind(&self) -> PartitionKind {
        match self {
            PartitionSpec::Hourly { .. } => PartitionKind::Hourly,
            PartitionSpec::Daily { .. } => PartitionKind::Daily,
            PartitionSpec::Monthly { .. } => PartitionKind::Monthly,
            PartitionSpec::Values(_) => PartitionKind::Values,
            PartitionSpec::Files(_) => PartitionKind::Files,
        }
    }

    /// For a `files` partitioning, its partitions now, as a list of values
    /// (every other method needs them); any other partitioning as it is.
    pub fn with_files(&self, root: &std::path::Path) -> Result<PartitionSpec, PartitionError> {
        match self {
            PartitionSpec::Files(glob) => Ok(PartitionSpec::Values(file_stems(root, glob)?)),
            other => Ok(other.clone()),
        }
    }

    /// Checks that `key` is a partition of this task, returning it normalised.
    pub fn check(&self, key: &str) -> Result<String, PartitionError> {
        match self {
            PartitionSpec::Hourly { start, end, zone } => {
                let t = parse_hour(key, zone)?;
                in_bounds(t, *start, *end, |t| hour_key(t, zone))?;
                Ok(hour_key(t, zone))
            }
            PartitionSpec::Daily { start, end, .. } => {
                let d = parse_day(key)?;
                in_bounds(d, *start, *end, day_key)?;
                Ok(day_key(d))
            }
            PartitionSpec::Monthly { start, end, .. } => {
                let d = parse_month(key)?;
                in_bounds(d, *start, *end, month_key)?;
                Ok(month_key(d))
            }
            PartitionSpec::Values(values) => {
                if values.iter().any(|v| v == key) {
                    Ok(key.to_owned())
                } else {
                    Err(PartitionError::NotAValue {
                        key: key.to_owned(),
                        values: shown_values(values),
                    })
                }
            }
            PartitionSpec::Files(glob) => Err(PartitionError::NotAValue {
                key: key.to_owned(),
                values: format!("the stems of {glob}"),
            }),
        }
    }

    /// The partitions a run without `--partition`/`--backfill` covers: the
    /// last complete hour, day or month in the zone, or every value.
    pub fn latest(&self, clock: Clock) -> Result<Vec<String>, PartitionError> {
        match self {
            PartitionSpec::Hourly { start, end, zone } => {
                let now = clock.now_in(zone)?;
                // The hour now began at, on the zone's clock, then the one before.
                let z = now.to_zoned_datetime(zone.tz.clone());
                let began = z
                    .datetime()
                    .with()
                    .minute(0)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()
                    .map_err(out_of_range)?;
                let began = match zone.tz.to_ambiguous_timestamp(began).offset() {
                    AmbiguousOffset::Fold { .. } => z.offset().to_timestamp(began),
                    _ => zone.tz.to_timestamp(began),
                }
                .map_err(out_of_range)?;
                let mut t = began.checked_sub(HOUR).map_err(out_of_range)?;
                if let Some(end) = end {
                    t = t.min(*end);
                }
                if t < *start {
                    return Err(PartitionError::NotComplete(hour_key(*start, zone)));
                }
                Ok(vec![hour_key(t, zone)])
            }
            PartitionSpec::Daily { start, end, zone } => {
                let mut d = clock.date_in(zone).yesterday().map_err(out_of_range)?;
                if let Some(end) = end {
                    d = d.min(*end);
                }
                if d < *start {
                    return Err(PartitionError::NotComplete(day_key(*start)));
                }
                Ok(vec![day_key(d)])
            }
            PartitionSpec::Monthly { start, end, zone } => {
                let mut d = clock
                    .date_in(zone)
                    .first_of_month()
                    .checked_sub(1.month())
                    .map_err(out_of_range)?;
                if let Some(end) = end {
                    d = d.min(*end);
                }
                if d < *start {
                    return Err(PartitionError::NotComplete(month_key(*start)));
                }
                Ok(vec![month_key(d)])
            }
            PartitionSpec::Values(values) => Ok(values.clone()),
            PartitionSpec::Files(_) => Ok(Vec::new()),
        }
    }

    /// The last `n` partitions up to the latest (all of a value or file
    /// partitioning), oldest first: what `hotpass partitions` shows.
    pub fn recent(&self, clock: Clock, n: usize) -> Result<Vec<String>, PartitionError> {
        let latest = self.latest(clock)?;
        let Some(last) = latest.last().filter(|_| self.kind().is_time()) else {
            return Ok(latest);
        };
        let first = match self {
            PartitionSpec::Hourly { start, zone, .. } => {
                let t = parse_hour(last, zone)?;
                let back = SignedDuration::from_hours(n.saturating_sub(1) as i64);
                hour_key(t.checked_sub(back).map_err(out_of_range)?.max(*start), zone)
            }
            PartitionSpec::Daily { start, .. } => {
                let d = parse_day(last)?;
                let back = (n.saturating_sub(1) as i64).days();
                day_key(d.checked_sub(back).map_err(out_of_range)?.max(*start))
            }
            PartitionSpec::Monthly { start, .. } => {
                let d = parse_month(last)?;
                let back = (n.saturating_sub(1) as i64).months();
                month_key(d.checked_sub(back).map_err(out_of_range)?.max(*start))
            }
            _ => unreachable!("time partitionings only"),
        };
        self.range(&first, last)
    }

    /// Every partition from `from` to `to`, inclusive.
    pub fn range(&self, from: &str, to: &str) -> Result<Vec<String>, PartitionError> {
        let reversed = |why| PartitionError::Reversed {
            from: from.to_owned(),
            to: to.to_owned(),
            why,
        };
        let from = self.check(from)?;
        let to = self.check(to)?;
        match self {
            PartitionSpec::Hourly { zone, .. } => {
                let (a, b) = (parse_hour(&from, zone)?, parse_hour(&to, zone)?);
                if a > b {
                    return Err(reversed("its start is after its end"));
                }
                hours(a, b.checked_add(HOUR).map_err(out_of_range)?, zone)
            }
            PartitionSpec::Daily { .. } => {
                let (a, b) = (parse_day(&from)?, parse_day(&to)?);
                if a > b {
                    return Err(reversed("its start is after its end"));
                }
                let mut out = Vec::new();
                let mut d = a;
                while d <= b {
                    out.push(day_key(d));
                    d = d.tomorrow().map_err(out_of_range)?;
                }
                Ok(out)
            }
            PartitionSpec::Monthly { .. } => {
                let (a, b) = (parse_month(&from)?, parse_month(&to)?);
                if a > b {
                    return Err(reversed("its start is after its end"));
                }
                let mut out = Vec::new();
                let mut d = a;
                while d <= b {
                    out.push(month_key(d));
                    d = d.checked_add(1.month()).map_err(out_of_range)?;
                }
                Ok(out)
            }
            PartitionSpec::Values(values) => {
                let a = values.iter().position(|v| *v == from).unwrap_or(0);
                let b = values.iter().position(|v| *v == to).unwrap_or(0);
                if a > b {
                    return Err(reversed(
                        "values run in declared order, files in sorted order",
                    ));
                }
                Ok(values[a..=b].to_vec())
            }
            PartitionSpec::Files(_) => Ok(Vec::new()),
        }
    }

    /// The month key holding a daily (or hourly) key, for
    /// `partition_map = "calendar"`.
    pub fn month_of(day: &str) -> Option<String> {
        parse_day(day.get(..10)?).ok().map(month_key)
    }

    /// This partitioning's keys that fall in calendar period `key` of
    /// another partitioning (a day or a month, in this one's zone): a
    /// day's hours, a month's days or hours.
    pub fn within(&self, key: &str) -> Vec<String> {
        let period = parse_day(key)
            .map(|d| (d, d.tomorrow()))
            .or_else(|_| parse_month(key).map(|m| (m, m.checked_add(1.month()))));
        let Ok((first, Ok(next))) = period else {
            return Vec::new();
        };
        let keys = match self {
            PartitionSpec::Hourly { zone, .. } => {
                match (start_of(first, zone), start_of(next, zone)) {
                    (Ok(a), Ok(b)) => hours(a, b, zone).unwrap_or_default(),
                    _ => Vec::new(),
                }
            }
            PartitionSpec::Daily { .. } => {
                let mut out = Vec::new();
                let mut d = first;
                while d < next {
                    out.push(day_key(d));
                    match d.tomorrow() {
                        Ok(n) => d = n,
                        Err(_) => break,
                    }
                }
                out
            }
            _ => Vec::new(),
        };
        keys.into_iter()
            .filter_map(|k| self.check(&k).ok())
            .collect()
    }
}

/// A list of values, shortened for a message.
fn shown_values(values: &[String]) -> String {
    if values.len() <= 10 {
        values.join(", ")
    } else {
        format!("{}, … ({} in all)", values[..10].join(", "), values.len())
    }
}

fn in_bounds<T: PartialOrd + Copy>(
    d: T,
    start: T,
    end: Option<T>,
    show: impl Fn(T) -> String,
) -> Result<(), PartitionError> {
    if d < start {
        return Err(PartitionError::BeforeStart {
            key: show(d),
            first: show(start),
        });
    }
    if let Some(end) = end
        && d > end
    {
        return Err(PartitionError::AfterEnd {
            key: show(d),
            last: show(end),
        });
    }
    Ok(())
}

/// Splits `FROM..TO`; the error says what a range looks like.
pub fn split_range(s: &str) -> Result<(&str, &str), PartitionError> {
    match s.split_once("..") {
        Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains("..") => Ok((a, b)),
        _ => Err(PartitionError::NotARange(s.to_owned())),
    }
}

/// What time it is for partitions: `HOTPASS_NOW` (RFC 3339) if set, else
/// `HOTPASS_TODAY` (a date), else the clock.
pub fn clock(env_now: Option<&str>, env_today: Option<&str>) -> Result<Clock, PartitionError> {
    if let Some(s) = env_now {
        return s
            .parse::<Timestamp>()
            .map(Clock::Now)
            .map_err(|_| PartitionError::Now(s.to_owned()));
    }
    match env_today {
        Some(s) => parse_day(s)
            .map(Clock::Today)
            .map_err(|e| PartitionError::Today(Box::new(e))),
        None => Ok(Clock::Now(Timestamp::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today(s: &str) -> Clock {
        Clock::Today(parse_day(s).unwrap())
    }

    fn daily() -> PartitionSpec {
        PartitionSpec::Daily {
            start: parse_day("2025-01-01").unwrap(),
            end: None,
            zone: Zone::utc(),
        }
    }

    fn hourly(zone: &str) -> PartitionSpec {
        let zone = Zone::named(zone).unwrap();
        PartitionSpec::Hourly {
            start: parse_hour("2025-01-01T00", &zone).unwrap(),
            end: None,
            zone,
        }
    }

    #[test]
    fn daily_latest_is_yesterday() {
        assert_eq!(
            daily().latest(today("2025-03-01")).unwrap(),
            vec!["2025-02-28"]
        );
    }

    #[test]
    fn monthly_latest_is_last_month() {
        let m = PartitionSpec::Monthly {
            start: parse_month("2024-01").unwrap(),
            end: None,
            zone: Zone::utc(),
        };
        assert_eq!(m.latest(today("2025-01-15")).unwrap(), vec!["2024-12"]);
    }

    #[test]
    fn ranges_are_inclusive_and_cross_months() {
        let r = daily().range("2025-01-30", "2025-02-02").unwrap();
        assert_eq!(
            r,
            vec!["2025-01-30", "2025-01-31", "2025-02-01", "2025-02-02"]
        );
        let m = PartitionSpec::Monthly {
            start: parse_month("2024-01").unwrap(),
            end: None,
            zone: Zone::utc(),
        };
        assert_eq!(m.range("2024-11", "2025-02").unwrap().len(), 4);
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(
            daily()
                .range("2025-02-02", "2025-01-30")
                .unwrap_err()
                .to_string()
                .contains("reversed")
        );
        assert!(daily().range("2025-02-30", "2025-03-01").is_err());
        assert!(
            daily()
                .range("2024-12-01", "2025-01-02")
                .unwrap_err()
                .to_string()
                .contains("before")
        );
        assert!(split_range("2025-01-01").is_err());
        assert!(parse_day("2025-1-1").is_err());
    }

    #[test]
    fn values_check_membership() {
        let v = PartitionSpec::Values(vec!["za".into(), "bw".into(), "na".into()]);
        assert!(v.check("xx").is_err());
        assert_eq!(v.range("bw", "na").unwrap(), vec!["bw", "na"]);
    }

    #[test]
    fn berlin_days_have_23_and_25_hours_across_dst() {
        let h = hourly("Europe/Berlin");
        let spring = h.within("2025-03-30");
        assert_eq!(spring.len(), 23);
        assert!(
            !spring.contains(&"2025-03-30T02".to_owned()),
            "02:00 is skipped"
        );
        let fall = h.within("2025-10-26");
        assert_eq!(fall.len(), 25);
        assert!(fall.contains(&"2025-10-26T02+02:00".to_owned()));
        assert!(fall.contains(&"2025-10-26T02+01:00".to_owned()));
        let distinct: std::collections::BTreeSet<_> = fall.iter().collect();
        assert_eq!(distinct.len(), 25);
        // A backfill over the change expands the same way.
        let r = h.range("2025-10-26T00", "2025-10-26T23").unwrap();
        assert_eq!(r, fall);
        // The skipped and the repeated hour are errors that say why.
        assert!(matches!(
            h.check("2025-03-30T02"),
            Err(PartitionError::SkippedHour { .. })
        ));
        let e = h.check("2025-10-26T02").unwrap_err().to_string();
        assert!(
            e.contains("2025-10-26T02+02:00") && e.contains("2025-10-26T02+01:00"),
            "{e}"
        );
    }

    #[test]
    fn new_york_dst_and_the_latest_complete_hour() {
        let h = hourly("America/New_York");
        assert_eq!(h.within("2025-03-09").len(), 23);
        let fall = h.within("2025-11-02");
        assert_eq!(fall.len(), 25);
        assert_eq!(fall[1], "2025-11-02T01-04:00");
        assert_eq!(fall[2], "2025-11-02T01-05:00");
        // 14:30 UTC on 2025-07-01 is 10:30 EDT: the last complete hour is 09.
        let now = Clock::Now("2025-07-01T14:30:00Z".parse().unwrap());
        assert_eq!(h.latest(now).unwrap(), vec!["2025-07-01T09"]);
        // Days are the zone's: 03:00 UTC on the 2nd is still the 1st there.
        let d = PartitionSpec::Daily {
            start: parse_day("2025-01-01").unwrap(),
            end: None,
            zone: Zone::named("America/New_York").unwrap(),
        };
        let now = Clock::Now("2025-07-02T03:00:00Z".parse().unwrap());
        assert_eq!(d.latest(now).unwrap(), vec!["2025-06-30"]);
        // With only a date, it is midnight there: the last hour of the day before.
        assert_eq!(
            h.latest(today("2025-07-02")).unwrap(),
            vec!["2025-07-01T23"]
        );
    }

    #[test]
    fn hour_keys_round_trip_and_calendar_maps_hours_to_days() {
        let zone = Zone::named("Europe/Berlin").unwrap();
        for key in [
            "2025-01-01T00",
            "2025-10-26T02+02:00",
            "2025-10-26T02+01:00",
        ] {
            assert_eq!(hour_key(parse_hour(key, &zone).unwrap(), &zone), key);
        }
        assert!(parse_hour("2025-01-01", &zone).is_err());
        assert!(parse_hour("2025-01-01T24", &zone).is_err());
        assert_eq!(
            PartitionSpec::month_of("2025-10-26T02+01:00").unwrap(),
            "2025-10"
        );
        assert_eq!(daily().within("2025-02").len(), 28);
    }
}

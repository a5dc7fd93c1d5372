//! Partitions: daily, monthly and value partitionings, their keys, the
//! latest complete partition, and inclusive ranges for backfills.

use jiff::ToSpan;
use jiff::civil::Date;

/// How a task is partitioned, as validated from `partitions = {...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// One instance per day, keys `YYYY-MM-DD`.
    Daily { start: Date, end: Option<Date> },
    /// One instance per month, keys `YYYY-MM`; dates are the first of the month.
    Monthly { start: Date, end: Option<Date> },
    /// One instance per listed value, in the order declared.
    Values(Vec<String>),
}

/// The kind of a partitioning, for checking dependencies fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    Daily,
    Monthly,
    Values,
}

impl std::fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionKind::Daily => "daily",
            PartitionKind::Monthly => "monthly",
            PartitionKind::Values => "values",
        })
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

impl PartitionSpec {
    /// The kind of this partitioning.
    pub fn kind(&self) -> PartitionKind {
        match self {
            PartitionSpec::Daily { .. } => PartitionKind::Daily,
            PartitionSpec::Monthly { .. } => PartitionKind::Monthly,
            PartitionSpec::Values(_) => PartitionKind::Values,
        }
    }

    /// Checks that `key` is a partition of this task, returning it normalised.
    pub fn check(&self, key: &str) -> Result<String, PartitionError> {
        match self {
            PartitionSpec::Daily { start, end } => {
                let d = parse_day(key)?;
                in_bounds(d, *start, *end, day_key)?;
                Ok(day_key(d))
            }
            PartitionSpec::Monthly { start, end } => {
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
                        values: values.join(", "),
                    })
                }
            }
        }
    }

    /// The partitions a run without `--partition`/`--backfill` covers: the
    /// last complete day or month before `today`, or every value.
    pub fn latest(&self, today: Date) -> Result<Vec<String>, PartitionError> {
        match self {
            PartitionSpec::Daily { start, end } => {
                let mut d = today.yesterday().map_err(out_of_range)?;
                if let Some(end) = end {
                    d = d.min(*end);
                }
                if d < *start {
                    return Err(PartitionError::NotComplete(day_key(*start)));
                }
                Ok(vec![day_key(d)])
            }
            PartitionSpec::Monthly { start, end } => {
                let mut d = today
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
        }
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
                    return Err(reversed("values run in declared order"));
                }
                Ok(values[a..=b].to_vec())
            }
        }
    }

    /// The month key holding a daily key (for `partition_map = "calendar"`).
    pub fn month_of(day: &str) -> Option<String> {
        parse_day(day).ok().map(month_key)
    }
}

fn in_bounds(
    d: Date,
    start: Date,
    end: Option<Date>,
    show: fn(Date) -> String,
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

/// Today's date: `HOTPASS_TODAY` if set, else the local clock.
pub fn today(env_today: Option<&str>) -> Result<Date, PartitionError> {
    match env_today {
        Some(s) => parse_day(s).map_err(|e| PartitionError::Today(Box::new(e))),
        None => Ok(jiff::ZonedDateTime::now().date()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily() -> PartitionSpec {
        PartitionSpec::Daily {
            start: parse_day("2025-01-01").unwrap(),
            end: None,
        }
    }

    #[test]
    fn daily_latest_is_yesterday() {
        let today = parse_day("2025-03-01").unwrap();
        assert_eq!(daily().latest(today).unwrap(), vec!["2025-02-28"]);
    }

    #[test]
    fn monthly_latest_is_last_month() {
        let m = PartitionSpec::Monthly {
            start: parse_month("2024-01").unwrap(),
            end: None,
        };
        assert_eq!(
            m.latest(parse_day("2025-01-15").unwrap()).unwrap(),
            vec!["2024-12"]
        );
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
}

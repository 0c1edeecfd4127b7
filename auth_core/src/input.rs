//! Rules for the values callers pass in: user ids, scopes, lifetimes and metadata.
//!
//! Each rule returns an [`InputError`] that names the argument and says what is wrong, never
//! quoting the value, so that the extension can turn it into an ERROR with a precise SQLSTATE.

/// The longest user id accepted, in bytes. Ids are the application's own (uuid, bigint,
/// `auth0|...`, an e-mail address); 512 bytes holds all of them with room to spare and keeps
/// every invalidation payload far below NOTIFY's 8000-byte limit.
pub const MAX_USER_ID_BYTES: usize = 512;
/// The longest organization id accepted, in bytes (the same room as user ids).
pub const MAX_ORG_ID_BYTES: usize = 512;
/// The longest name of an organization or key, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The most scopes on one credential.
pub const MAX_SCOPES: usize = 256;
/// The longest scope, in bytes.
pub const MAX_SCOPE_BYTES: usize = 256;
/// The largest metadata document, in bytes of its stored form.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The deepest nesting of objects and arrays in metadata, the object itself counting as one.
/// An API key's metadata sits two levels down in its organization's document, which must stay
/// within the 128 levels auth_pg's JSON reader takes.
pub const MAX_METADATA_DEPTH: usize = 64;
/// The most credentials in one batch call.
pub const MAX_BATCH: usize = 10_000;

/// What is wrong with an argument. `argument` is the SQL parameter's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A required argument is NULL.
    #[error("{argument} must not be NULL")]
    Null {
        /// The parameter.
        argument: &'static str,
    },
    /// An array argument has a NULL element.
    #[error("{argument} must not contain NULL elements")]
    NullElement {
        /// The parameter.
        argument: &'static str,
    },
    /// A text argument is empty.
    #[error("{argument} must not be empty")]
    Empty {
        /// The parameter.
        argument: &'static str,
    },
    /// A text argument is longer than its limit.
    #[error("{argument} is longer than {limit} bytes")]
    TooLong {
        /// The parameter.
        argument: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// An array argument has more elements than its limit.
    #[error("{argument} has more than {limit} elements")]
    TooMany {
        /// The parameter.
        argument: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A text argument contains control characters or white space where none are allowed.
    #[error("{argument} must not contain white space or control characters")]
    BadCharacters {
        /// The parameter.
        argument: &'static str,
    },
    /// An interval argument is zero or negative.
    #[error("{argument} must be a positive interval")]
    NotPositive {
        /// The parameter.
        argument: &'static str,
    },
    /// An interval argument is negative.
    #[error("{argument} must not be negative")]
    Negative {
        /// The parameter.
        argument: &'static str,
    },
    /// A time argument is not in the future.
    #[error("{argument} must be in the future")]
    NotInFuture {
        /// The parameter.
        argument: &'static str,
    },
    /// An interval argument is longer than the configured maximum.
    #[error("{argument} is longer than the maximum of {}", describe_seconds(*.max_seconds))]
    TooLongInterval {
        /// The parameter.
        argument: &'static str,
        /// The setting that sets the maximum.
        setting: &'static str,
        /// The maximum, in seconds.
        max_seconds: i64,
    },
    /// An interval argument would carry a time past the range of PostgreSQL's timestamps.
    #[error("{argument} reaches past the range of timestamps")]
    OutOfRange {
        /// The parameter.
        argument: &'static str,
    },
    /// An idle timeout is longer than the absolute timeout it must fit in.
    #[error("idle_timeout must not be longer than absolute_timeout")]
    IdleLongerThanAbsolute,
    /// A permission name is not segments separated by `:` with `*` only as the whole last
    /// segment.
    #[error("{argument} must be names separated by ':', with '*' only as the whole last part")]
    BadPermission {
        /// The parameter.
        argument: &'static str,
    },
    /// A JSON argument is not a JSON object.
    #[error("{argument} must be a JSON object")]
    NotAnObject {
        /// The parameter.
        argument: &'static str,
    },
}

/// A number of seconds in the largest whole unit: `86400` is "1 day", `90` is "90 seconds".
pub fn describe_seconds(seconds: i64) -> String {
    let (count, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds != 0 && seconds % size == 0)
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Checks an identifier or name the application chooses (a user id, an organization id, a
/// key's name): present, not empty, at most `limit` bytes, no control characters.
///
/// White space is allowed inside (some applications use display-like ids), but not control
/// characters, which would make values ambiguous in logs.
pub fn check_identifier<'a>(
    argument: &'static str,
    value: Option<&'a str>,
    limit: usize,
) -> Result<&'a str, InputError> {
    let value = value.ok_or(InputError::Null { argument })?;
    if value.is_empty() {
        return Err(InputError::Empty { argument });
    }
    if value.len() > limit {
        return Err(InputError::TooLong { argument, limit });
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::BadCharacters { argument });
    }
    Ok(value)
}

/// Checks a user id: see [`check_identifier`], at most [`MAX_USER_ID_BYTES`].
pub fn check_user_id(user_id: Option<&str>) -> Result<&str, InputError> {
    check_identifier("user_id", user_id, MAX_USER_ID_BYTES)
}

/// Checks a list of scopes: at most [`MAX_SCOPES`], each present, not empty, at most
/// [`MAX_SCOPE_BYTES`], with no white space or control characters. Returns them sorted and
/// without duplicates, so that equal sets are stored equally.
pub fn normalize_scopes<'a, I>(scopes: I) -> Result<Vec<&'a str>, InputError>
where
    I: IntoIterator<Item = Option<&'a str>>,
{
    let argument = "scopes";
    let mut out = Vec::new();
    for scope in scopes {
        let scope = scope.ok_or(InputError::NullElement { argument })?;
        if scope.is_empty() {
            return Err(InputError::Empty { argument });
        }
        if scope.len() > MAX_SCOPE_BYTES {
            return Err(InputError::TooLong {
                argument,
                limit: MAX_SCOPE_BYTES,
            });
        }
        if scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InputError::BadCharacters { argument });
        }
        out.push(scope);
        if out.len() > MAX_SCOPES {
            return Err(InputError::TooMany {
                argument,
                limit: MAX_SCOPES,
            });
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// An interval as PostgreSQL stores it: months, days and microseconds, each with its own sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalParts {
    /// Whole months.
    pub months: i32,
    /// Whole days.
    pub days: i32,
    /// Microseconds.
    pub micros: i64,
}

impl IntervalParts {
    /// The interval's length in microseconds, counting a month as 30 days and a day as 24
    /// hours: the same rule PostgreSQL uses to compare intervals.
    pub fn comparable_micros(self) -> i128 {
        const MICROS_PER_DAY: i128 = 86_400_000_000;
        i128::from(self.months) * 30 * MICROS_PER_DAY
            + i128::from(self.days) * MICROS_PER_DAY
            + i128::from(self.micros)
    }
}

/// The first moment a PostgreSQL timestamp can hold (4714-11-24 BC), in microseconds since
/// 2000-01-01, PostgreSQL's epoch.
pub const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
/// The moment just past the last one a PostgreSQL timestamp can hold (294277-01-01).
pub const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;

/// Checks that `interval` added to `at` (microseconds since 2000-01-01) stays within the range
/// of PostgreSQL's timestamps, whatever the calendar does with its months and days.
///
/// The check is conservative: a month counts as 31 days and a day as 25 hours (a day that gains
/// an hour at a daylight saving change), so an interval that lands within about 2 % of the edge
/// of the range (thousands of years) is refused too.
pub fn check_reach(
    argument: &'static str,
    at: i64,
    interval: IntervalParts,
) -> Result<(), InputError> {
    const MICROS_PER_HOUR: i128 = 3_600_000_000;
    // Each part moves the time its own way: the result lies between `at` moved back by the
    // negative parts at their longest and forward by the positive ones.
    let parts = [
        i128::from(interval.months) * 31 * 24 * MICROS_PER_HOUR,
        i128::from(interval.days) * 25 * MICROS_PER_HOUR,
        i128::from(interval.micros),
    ];
    let forward: i128 = parts.iter().filter(|part| **part > 0).sum();
    let back: i128 = parts.iter().filter(|part| **part < 0).sum();
    let at = i128::from(at);
    if at + back < i128::from(MIN_TIMESTAMP) || at + forward >= i128::from(END_TIMESTAMP) {
        return Err(InputError::OutOfRange { argument });
    }
    Ok(())
}

/// Checks a lifetime: positive, and at most `max_seconds` (by PostgreSQL's interval ordering).
pub fn check_lifetime(
    argument: &'static str,
    interval: Option<IntervalParts>,
    setting: &'static str,
    max_seconds: i64,
) -> Result<IntervalParts, InputError> {
    let interval = interval.ok_or(InputError::Null { argument })?;
    let micros = interval.comparable_micros();
    if micros <= 0 {
        return Err(InputError::NotPositive { argument });
    }
    if micros > i128::from(max_seconds) * 1_000_000 {
        return Err(InputError::TooLongInterval {
            argument,
            setting,
            max_seconds,
        });
    }
    Ok(interval)
}

/// Checks a session's timeouts: both positive, the idle one no longer than the absolute one,
/// and the absolute one at most `max_seconds` (the setting `setting`).
pub fn check_session_timeouts(
    idle_timeout: Option<IntervalParts>,
    absolute_timeout: Option<IntervalParts>,
    setting: &'static str,
    max_seconds: i64,
) -> Result<(IntervalParts, IntervalParts), InputError> {
    let idle = check_lifetime("idle_timeout", idle_timeout, setting, max_seconds)?;
    let absolute = check_lifetime("absolute_timeout", absolute_timeout, setting, max_seconds)?;
    if idle.comparable_micros() > absolute.comparable_micros() {
        return Err(InputError::IdleLongerThanAbsolute);
    }
    Ok((idle, absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert_eq!(
            check_user_id(Some("auth0|5f7c8ec7c33c6c004bbafe82")),
            Ok("auth0|5f7c8ec7c33c6c004bbafe82")
        );
        assert_eq!(check_user_id(Some("42")), Ok("42"));
        assert_eq!(check_user_id(Some("Ada Lovelace")), Ok("Ada Lovelace"));
        let too_long = "u".repeat(MAX_USER_ID_BYTES + 1);
        let cases = [
            (
                None,
                InputError::Null {
                    argument: "user_id",
                },
            ),
            (
                Some(""),
                InputError::Empty {
                    argument: "user_id",
                },
            ),
            (
                Some(too_long.as_str()),
                InputError::TooLong {
                    argument: "user_id",
                    limit: MAX_USER_ID_BYTES,
                },
            ),
            (
                Some("a\nb"),
                InputError::BadCharacters {
                    argument: "user_id",
                },
            ),
            (
                Some("a\0b"),
                InputError::BadCharacters {
                    argument: "user_id",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(check_user_id(input), Err(expected));
        }
        assert!(check_user_id(Some(&"u".repeat(MAX_USER_ID_BYTES))).is_ok());
    }

    #[test]
    fn scopes_are_sorted_and_deduplicated() {
        let scopes = normalize_scopes([Some("write"), Some("read"), Some("write")]).expect("valid");
        assert_eq!(scopes, ["read", "write"]);
        assert_eq!(normalize_scopes(std::iter::empty()), Ok(vec![]));
    }

    #[test]
    fn bad_scopes() {
        let argument = "scopes";
        let long = "s".repeat(MAX_SCOPE_BYTES + 1);
        let cases: Vec<(Vec<Option<&str>>, InputError)> = vec![
            (vec![Some("a"), None], InputError::NullElement { argument }),
            (vec![Some("")], InputError::Empty { argument }),
            (
                vec![Some(&long)],
                InputError::TooLong {
                    argument,
                    limit: MAX_SCOPE_BYTES,
                },
            ),
            (
                vec![Some("read write")],
                InputError::BadCharacters { argument },
            ),
            (
                vec![Some("read\u{7}")],
                InputError::BadCharacters { argument },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_scopes(input), Err(expected));
        }
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert_eq!(
            normalize_scopes(many.iter().map(|s| Some(s.as_str()))),
            Err(InputError::TooMany {
                argument,
                limit: MAX_SCOPES
            })
        );
    }

    #[test]
    fn seconds_are_described_in_whole_units() {
        assert_eq!(describe_seconds(86_400), "1 day");
        assert_eq!(describe_seconds(365 * 86_400), "365 days");
        assert_eq!(describe_seconds(7_200), "2 hours");
        assert_eq!(describe_seconds(90), "90 seconds");
        assert_eq!(describe_seconds(60), "1 minute");
        assert_eq!(describe_seconds(0), "0 seconds");
    }

    #[test]
    fn lifetimes() {
        let hour = IntervalParts {
            months: 0,
            days: 0,
            micros: 3_600_000_000,
        };
        let day_seconds = 86_400;
        assert_eq!(
            check_lifetime("ttl", Some(hour), "s", day_seconds),
            Ok(hour)
        );
        let cases = [
            (None, InputError::Null { argument: "ttl" }),
            (
                Some(IntervalParts {
                    months: 0,
                    days: 0,
                    micros: 0,
                }),
                InputError::NotPositive { argument: "ttl" },
            ),
            (
                Some(IntervalParts {
                    months: 0,
                    days: 0,
                    micros: -1,
                }),
                InputError::NotPositive { argument: "ttl" },
            ),
            // 1 month - 30 days compares equal to zero.
            (
                Some(IntervalParts {
                    months: 1,
                    days: -30,
                    micros: 0,
                }),
                InputError::NotPositive { argument: "ttl" },
            ),
            (
                Some(IntervalParts {
                    months: 0,
                    days: 1,
                    micros: 1,
                }),
                InputError::TooLongInterval {
                    argument: "ttl",
                    setting: "s",
                    max_seconds: day_seconds,
                },
            ),
            (
                Some(IntervalParts {
                    months: i32::MAX,
                    days: i32::MAX,
                    micros: i64::MAX,
                }),
                InputError::TooLongInterval {
                    argument: "ttl",
                    setting: "s",
                    max_seconds: day_seconds,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                check_lifetime("ttl", input, "s", day_seconds),
                Err(expected)
            );
        }
        let exactly_a_day = IntervalParts {
            months: 0,
            days: 1,
            micros: 0,
        };
        assert_eq!(
            check_lifetime("ttl", Some(exactly_a_day), "s", day_seconds),
            Ok(exactly_a_day)
        );
    }

    #[test]
    fn session_timeouts() {
        let hours = |h: i64| IntervalParts {
            months: 0,
            days: 0,
            micros: h * 3_600_000_000,
        };
        let max = 365 * 86_400;
        let setting = "auth_pg.max_session_lifetime";
        assert_eq!(
            check_session_timeouts(Some(hours(1)), Some(hours(24)), setting, max),
            Ok((hours(1), hours(24)))
        );
        // Equal timeouts are allowed: a session that ends after its first idle period.
        assert!(check_session_timeouts(Some(hours(2)), Some(hours(2)), setting, max).is_ok());
        assert_eq!(
            check_session_timeouts(Some(hours(25)), Some(hours(24)), setting, max),
            Err(InputError::IdleLongerThanAbsolute)
        );
        // One day of calendar days is longer than 23 hours.
        let one_day = IntervalParts {
            months: 0,
            days: 1,
            micros: 0,
        };
        assert_eq!(
            check_session_timeouts(Some(one_day), Some(hours(23)), setting, max),
            Err(InputError::IdleLongerThanAbsolute)
        );
        for (idle, absolute, argument) in [
            (None, Some(hours(1)), "idle_timeout"),
            (Some(hours(1)), None, "absolute_timeout"),
        ] {
            assert_eq!(
                check_session_timeouts(idle, absolute, setting, max),
                Err(InputError::Null { argument })
            );
        }
        for (idle, absolute, argument) in [
            (hours(0), hours(1), "idle_timeout"),
            (hours(-1), hours(1), "idle_timeout"),
            (hours(1), hours(0), "absolute_timeout"),
        ] {
            assert_eq!(
                check_session_timeouts(Some(idle), Some(absolute), setting, max),
                Err(InputError::NotPositive { argument })
            );
        }
        assert_eq!(
            check_session_timeouts(Some(hours(1)), Some(hours(366 * 24)), setting, max),
            Err(InputError::TooLongInterval {
                argument: "absolute_timeout",
                setting,
                max_seconds: max
            })
        );
    }

    #[test]
    fn reach_stays_within_the_range_of_timestamps() {
        // 2026-11-24, in microseconds since 2000-01-01.
        let now = 851_385_600_000_000;
        let years = |n: i32| IntervalParts {
            months: 12 * n,
            days: 0,
            micros: 0,
        };
        let argument = "grace";
        for fine in [years(1), years(-1000), years(250_000), years(0)] {
            assert_eq!(check_reach(argument, now, fine), Ok(()), "{fine:?}");
        }
        let out = Err(InputError::OutOfRange { argument });
        for far in [
            years(300_000),
            years(-7_000),
            years(178_000_000),
            IntervalParts {
                months: i32::MAX,
                days: i32::MAX,
                micros: i64::MAX,
            },
            IntervalParts {
                months: i32::MIN,
                days: i32::MIN,
                micros: i64::MIN,
            },
            IntervalParts {
                months: 0,
                days: 0,
                micros: i64::MAX,
            },
        ] {
            assert_eq!(check_reach(argument, now, far), out, "{far:?}");
        }
        let one_micro = IntervalParts {
            months: 0,
            days: 0,
            micros: 1,
        };
        assert_eq!(check_reach(argument, END_TIMESTAMP - 2, one_micro), Ok(()));
        assert_eq!(check_reach(argument, END_TIMESTAMP - 1, one_micro), out);
    }
}

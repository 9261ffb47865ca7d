//! Durations on the command line: `30s`, `5m`, `1h`, `2d`.

use std::fmt;
use std::time::Duration;

/// Why a duration argument was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a duration: {}; write a whole number followed by s, m, h or d (e.g. 30s, 5m, 1h, 2d)",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses a whole number followed by one unit: `s` (seconds), `m`
/// (minutes), `h` (hours) or `d` (days). Zero is rejected.
///
/// # Errors
///
/// A [`DurationError`] naming what was wrong.
pub(crate) fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("the unit is missing"))?;
    let (number, unit) = input.split_at(split);
    if number.is_empty() {
        return Err(err("it must start with a number"));
    }
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err("the unit must be one of s, m, h, d")),
    };
    let value: u64 = number.parse().map_err(|_| err("the number is too large"))?;
    if value == 0 {
        return Err(err("it must be greater than zero"));
    }
    let secs = value
        .checked_mul(unit_secs)
        .ok_or_else(|| err("the number is too large"))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn missing_or_unknown_units_are_rejected_with_a_hint() {
        for bad in [
            "30", "5 m", "1w", "1H", "1h30m", "", "m", "-1s", "1.5h", "0s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains("e.g. 30s"), "{bad}: {err}");
        }
    }

    #[test]
    fn overflowing_numbers_are_rejected() {
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
    }
}

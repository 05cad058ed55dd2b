//! Envoy's durations: `google.protobuf.Duration` in its JSON form.
//!
//! Envoy reads YAML by turning it into JSON and parsing that as proto3 JSON, where a
//! `Duration` is a string of seconds with an `s` suffix and up to nine fractional digits
//! (`"5s"`, `"0.25s"`, `"1.000000001s"`). Nothing else is a duration there: not `5`, not
//! `5m`, not `{ seconds: 5 }`. This module accepts exactly that form, and when a value is
//! almost right (a unit other than seconds, a bare number) its error says what to write.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Largest number of seconds a `google.protobuf.Duration` holds (10,000 years), the limit
/// Envoy's validation applies.
pub const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// How a duration is written, for messages.
const DURATION_FORM: &str =
    "a duration is a number of seconds with an `s` suffix, such as \"5s\" or \"0.25s\"";

/// Why a duration string was rejected; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration \"{text}\": {reason}")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it, and what to write instead.
    pub reason: String,
}

/// Parse a proto3 JSON duration: seconds with an `s` suffix, such as `"5s"` or `"0.25s"`.
///
/// Negative durations are rejected: no duration zerohop reads may be negative, and
/// Envoy's own validation rejects them where it matters (`connect_timeout`).
///
/// # Errors
/// [`DurationError`] for anything else, with a suggested spelling when the text is a
/// number with another unit (`"250ms"` → `"0.25s"`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = |reason: String| DurationError {
        text: text.to_owned(),
        reason,
    };
    let Some(number) = text.strip_suffix('s') else {
        return Err(bad(match suggest_seconds(text) {
            Some(seconds) => format!("Envoy durations are in seconds; write \"{seconds}\""),
            None => DURATION_FORM.to_owned(),
        }));
    };
    if number.starts_with('-') {
        return Err(bad("a duration cannot be negative".to_owned()));
    }
    // Units that end in `s` but are not seconds.
    if ["ms", "us", "ns"].iter().any(|unit| text.ends_with(unit)) {
        let reason = match suggest_seconds(text) {
            Some(seconds) => format!("Envoy durations are in seconds; write \"{seconds}\""),
            None => DURATION_FORM.to_owned(),
        };
        return Err(bad(reason));
    }
    let Some((seconds, nanos)) = parse_decimal(number) else {
        return Err(bad(DURATION_FORM.to_owned()));
    };
    if seconds > MAX_DURATION_SECONDS {
        return Err(bad(format!(
            "it is longer than the longest duration Envoy takes, {MAX_DURATION_SECONDS}s \
             (10,000 years)"
        )));
    }
    Ok(Duration::new(seconds, nanos))
}

/// Parse `digits[.digits]` with at most nine fractional digits into whole seconds and
/// nanoseconds; `None` for anything else (signs, exponents, spaces, empty parts).
fn parse_decimal(text: &str) -> Option<(u64, u32)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) {
        return None;
    }
    let seconds = whole.parse::<u64>().ok()?;
    let nanos = match fraction {
        None => 0,
        Some(fraction) if all_digits(fraction) && fraction.len() <= 9 => {
            // Pad to nine digits: "25" is 250_000_000 ns.
            format!("{fraction:0<9}").parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    Some((seconds, nanos))
}

/// For a number with a unit Envoy does not take (`250ms`, `5m`, `1h`), return the same
/// duration written in seconds (`0.25s`, `300s`, `3600s`).
fn suggest_seconds(text: &str) -> Option<String> {
    const UNITS: &[(&str, u128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("m", 60 * NANOS_PER_SECOND),
        ("h", 3_600 * NANOS_PER_SECOND),
    ];
    let (number, nanos_per_unit) = UNITS
        .iter()
        .find_map(|&(unit, nanos)| text.strip_suffix(unit).map(|number| (number, nanos)))?;
    let (whole, fraction) = parse_decimal(number)?;
    let total = (u128::from(whole) * NANOS_PER_SECOND + u128::from(fraction)) * nanos_per_unit
        / NANOS_PER_SECOND;
    Some(format_seconds(total))
}

/// Write a bare number (YAML `5` or `0.25`) as the duration string Envoy wants.
fn suggest_for_number(number: &str) -> String {
    match parse_decimal(number) {
        Some(_) => format!("write it as a string with an `s` suffix: \"{number}s\""),
        None => DURATION_FORM.to_owned(),
    }
}

/// Format nanoseconds as proto3 JSON seconds: `300s`, `0.25s`, `0.000001s`.
fn format_seconds(nanos: u128) -> String {
    let whole = nanos / NANOS_PER_SECOND;
    let fraction = nanos % NANOS_PER_SECOND;
    if fraction == 0 {
        format!("{whole}s")
    } else {
        let digits = format!("{fraction:09}");
        format!("{whole}.{}s", digits.trim_end_matches('0'))
    }
}

/// Write a duration the way Envoy's YAML does: `5s`, `0.25s`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    format_seconds(duration.as_nanos())
}

/// A duration read from YAML: accepts only the proto3 JSON string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProtoDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for ProtoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = ProtoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"5s\" or \"0.25s\"")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ProtoDuration, E> {
        parse_duration(value).map(ProtoDuration).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<ProtoDuration, E> {
        Err(number_error(&value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<ProtoDuration, E> {
        if value < 0 {
            return Err(E::custom(DurationError {
                text: value.to_string(),
                reason: "a duration cannot be negative".to_owned(),
            }));
        }
        Err(number_error(&value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<ProtoDuration, E> {
        Err(number_error(&value.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<ProtoDuration, A::Error> {
        Err(de::Error::custom(
            "invalid duration: Envoy's YAML takes a duration as a string such as \"5s\" or \
             \"0.25s\", not as a mapping of `seconds` and `nanos`",
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<ProtoDuration, A::Error> {
        Err(de::Error::custom(format!(
            "invalid duration: a list is not a duration; {DURATION_FORM}"
        )))
    }
}

fn number_error<E: de::Error>(number: &str) -> E {
    E::custom(format!(
        "invalid duration {number}: a duration is a string, not a number; {}",
        suggest_for_number(number)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse_duration(text) {
            Ok(d) => panic!("{text} parsed as {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn valid_durations() {
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("0.25s"), Duration::from_millis(250));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1.000000001s"), Duration::new(1, 1));
        assert_eq!(ok("0.000001s"), Duration::from_micros(1));
        assert_eq!(ok("3600s"), Duration::from_secs(3600));
        assert_eq!(ok("007s"), Duration::from_secs(7));
        assert_eq!(ok("2.50s"), Duration::from_millis(2500));
        assert_eq!(
            ok("315576000000.999999999s"),
            Duration::new(MAX_DURATION_SECONDS, 999_999_999)
        );
    }

    #[test]
    fn invalid_durations() {
        for (text, expected) in [
            ("5", "invalid duration \"5\": a duration is a number of seconds with an `s` suffix, such as \"5s\" or \"0.25s\""),
            ("", "invalid duration \"\": a duration is a number of seconds"),
            ("s", "invalid duration \"s\": a duration is a number of seconds"),
            ("5 s", "a duration is a number of seconds"),
            (" 5s", "a duration is a number of seconds"),
            ("5S", "a duration is a number of seconds"),
            ("+5s", "a duration is a number of seconds"),
            (".5s", "a duration is a number of seconds"),
            ("5.s", "a duration is a number of seconds"),
            ("1e3s", "a duration is a number of seconds"),
            ("1.0000000001s", "a duration is a number of seconds"),
            ("0x10s", "a duration is a number of seconds"),
            ("five seconds", "a duration is a number of seconds"),
            ("-1s", "invalid duration \"-1s\": a duration cannot be negative"),
            ("-0.5s", "a duration cannot be negative"),
            ("315576000001s", "longer than the longest duration Envoy takes, 315576000000s"),
            ("99999999999999999999s", "a duration is a number of seconds"),
        ] {
            let message = err(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn other_units_get_a_suggestion() {
        for (text, suggestion) in [
            ("250ms", "0.25s"),
            ("1500ms", "1.5s"),
            ("5m", "300s"),
            ("1h", "3600s"),
            ("1.5h", "5400s"),
            ("10us", "0.00001s"),
            ("7ns", "0.000000007s"),
        ] {
            assert_eq!(
                err(text),
                format!(
                    "invalid duration \"{text}\": Envoy durations are in seconds; write \
                     \"{suggestion}\""
                )
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "5s", "0.25s", "1.000000001s", "3600s"] {
            assert_eq!(format_duration(ok(text)), text);
        }
    }

    #[test]
    fn yaml_forms() {
        let parse = |yaml: &str| {
            serde_yaml_ng::from_str::<ProtoDuration>(yaml)
                .map(|d| d.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("\"0.25s\""), Ok(Duration::from_millis(250)));
        let message = parse("5").unwrap_err();
        assert!(
            message.contains("a duration is a string, not a number; write it as a string with an `s` suffix: \"5s\""),
            "{message}"
        );
        let message = parse("0.25").unwrap_err();
        assert!(message.contains("\"0.25s\""), "{message}");
        let message = parse("-3").unwrap_err();
        assert!(message.contains("cannot be negative"), "{message}");
        let message = parse("{ seconds: 5, nanos: 0 }").unwrap_err();
        assert!(
            message.contains("not as a mapping of `seconds` and `nanos`"),
            "{message}"
        );
        let message = parse("[5s]").unwrap_err();
        assert!(message.contains("a list is not a duration"), "{message}");
        let message = parse("true").unwrap_err();
        assert!(
            message.contains("expected a duration string such as \"5s\""),
            "{message}"
        );
    }
}

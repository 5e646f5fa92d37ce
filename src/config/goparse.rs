//! Go's scalar parsing and formatting, reproduced so that braid accepts exactly the flag values
//! etcd accepts and prints values and errors the way etcd does.
//!
//! etcd parses flags with Go's `flag` package, which uses `strconv.ParseBool`,
//! `strconv.ParseUint/ParseInt(s, 0, bits)` (base prefixes and `_` separators allowed) and
//! `time.ParseDuration`; messages quote values with `%q`.

use std::time::Duration;

/// Why a Go integer parse failed; Go's flag package reports these as "parse error" and
/// "value out of range".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntError {
    Syntax,
    Range,
}

impl IntError {
    /// The text Go's flag package substitutes for strconv's errors (`numError`).
    pub(crate) fn flag_text(self) -> &'static str {
        match self {
            IntError::Syntax => "parse error",
            IntError::Range => "value out of range",
        }
    }

    /// strconv's own wording, used where etcd passes strconv's error through unchanged
    /// (its custom `uint32Value` for `--max-concurrent-streams`).
    pub(crate) fn strconv_text(self, function: &str, input: &str) -> String {
        let reason = match self {
            IntError::Syntax => "invalid syntax",
            IntError::Range => "value out of range",
        };
        format!("strconv.{function}: parsing {}: {reason}", go_quote(input))
    }
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.ParseUint(text, 0, bits)`.
pub(crate) fn parse_uint(text: &str, bits: u32) -> Result<u64, IntError> {
    if text.is_empty() {
        return Err(IntError::Syntax);
    }
    let (radix, digits) = split_base_prefix(text);
    let mut value: u64 = 0;
    let mut saw_underscore = false;
    let mut saw_digit = false;
    for character in digits.chars() {
        if character == '_' {
            saw_underscore = true;
            continue;
        }
        let digit = character.to_digit(radix).ok_or(IntError::Syntax)?;
        saw_digit = true;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|shifted| shifted.checked_add(u64::from(digit)))
            .ok_or(IntError::Range)?;
    }
    // "0x" alone has no digits; a lone "0" is the octal prefix with an empty (zero) body.
    if !saw_digit && radix != 8 {
        return Err(IntError::Syntax);
    }
    if saw_underscore && !underscores_ok(text) {
        return Err(IntError::Syntax);
    }
    let max = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    if value > max {
        return Err(IntError::Range);
    }
    Ok(value)
}

/// `strconv.ParseInt(text, 0, bits)`.
pub(crate) fn parse_int(text: &str, bits: u32) -> Result<i64, IntError> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.starts_with(['+', '-']) {
        return Err(IntError::Syntax);
    }
    if body.contains('_') && !underscores_ok(text) {
        return Err(IntError::Syntax);
    }
    let magnitude = parse_uint(body, 64)?;
    let limit = 1u64 << (bits.min(64) - 1);
    if negative {
        if magnitude > limit {
            return Err(IntError::Range);
        }
        Ok((magnitude as i128).wrapping_neg() as i64)
    } else {
        if magnitude >= limit {
            return Err(IntError::Range);
        }
        Ok(magnitude as i64)
    }
}

fn split_base_prefix(text: &str) -> (u32, &str) {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'0') {
        return (10, text);
    }
    if bytes.len() >= 3 {
        match bytes[1].to_ascii_lowercase() {
            b'b' => return (2, &text[2..]),
            b'o' => return (8, &text[2..]),
            b'x' => return (16, &text[2..]),
            _ => {}
        }
    }
    (8, &text[1..])
}

/// Go's `underscoreOK`: underscores only between digits (a base prefix counts as a digit).
fn underscores_ok(text: &str) -> bool {
    let mut bytes = text.as_bytes();
    if let Some(b'-' | b'+') = bytes.first() {
        bytes = &bytes[1..];
    }
    // '^' start, '0' digit or prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut index = 0;
    let mut hex = false;
    if bytes.len() >= 2 && bytes[0] == b'0' && matches!(bytes[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        index = 2;
        saw = b'0';
        hex = bytes[1].eq_ignore_ascii_case(&b'x');
    }
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        if byte.is_ascii_digit() || (hex && byte.to_ascii_lowercase().is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if byte == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// `time.ParseDuration`, restricted to non-negative results (a `std::time::Duration` cannot be
/// negative). The error is Go's message (`time: invalid duration "x"` …); a negative duration
/// yields `None` in the error slot's place: callers report it as a parse error.
pub(crate) fn parse_duration(original: &str) -> Result<Duration, DurationError> {
    let mut rest = original;
    let mut negative = false;
    if let Some(first) = rest.chars().next() {
        if first == '-' || first == '+' {
            negative = first == '-';
            rest = &rest[1..];
        }
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Go(format!("time: invalid duration {}", time_quote(original)));
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let integer_text = &rest[..integer_len];
        rest = &rest[integer_len..];
        let mut fraction_text = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let fraction_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            fraction_text = &after_dot[..fraction_len];
            rest = &after_dot[fraction_len..];
            if integer_text.is_empty() && fraction_text.is_empty() {
                return Err(invalid());
            }
        }
        let unit_len = rest.find(|character: char| character == '.' || character.is_ascii_digit());
        let unit = &rest[..unit_len.unwrap_or(rest.len())];
        rest = &rest[unit.len()..];
        if unit.is_empty() {
            return Err(DurationError::Go(format!(
                "time: missing unit in duration {}",
                time_quote(original)
            )));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::Go(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(unit),
                    time_quote(original)
                )))
            }
        };
        let integer: u128 = if integer_text.is_empty() {
            0
        } else {
            integer_text.parse().map_err(|_| invalid())?
        };
        let mut value = integer.checked_mul(unit_nanos).ok_or_else(invalid)?;
        // Fractions beyond nanosecond precision are truncated, as Go does.
        let mut scale = unit_nanos;
        for digit in fraction_text.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            value += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(value).ok_or_else(invalid)?;
        if total_nanos > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    if negative && total_nanos != 0 {
        return Err(DurationError::Negative);
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// A `time.ParseDuration` failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Go's own message.
    Go(String),
    /// Go would accept it, but braid's durations are unsigned.
    Negative,
}

impl DurationError {
    pub(crate) fn message(&self, original: &str) -> String {
        match self {
            DurationError::Go(message) => message.clone(),
            DurationError::Negative => format!("negative duration {} is not supported", go_quote(original)),
        }
    }
}

/// Go's `time.Duration.String()`: "0s", "1.5ms", "2h0m0s".
pub fn format_go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", format_fraction(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds_nanos = nanos % 60_000_000_000;
    let seconds = format_fraction(seconds_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn format_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `%q` / `strconv.Quote` for the strings that appear in etcd's messages.
pub fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            control if (control as u32) < 0x80 && control.is_control() => {
                quoted.push_str(&format!("\\x{:02x}", control as u32));
            }
            control if control.is_control() => quoted.push_str(&format!("\\u{:04x}", control as u32)),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// The `time` package's own quoting: non-ASCII and control bytes become `\xHH`.
fn time_quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        if character.is_ascii() && !character.is_ascii_control() {
            if character == '"' || character == '\\' {
                quoted.push('\\');
            }
            quoted.push(character);
        } else {
            let mut buffer = [0u8; 4];
            for byte in character.encode_utf8(&mut buffer).bytes() {
                quoted.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `%q` applied to a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| go_quote(item)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_strconv() {
        for text in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(text), Some(true), "{text}");
        }
        for text in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(text), Some(false), "{text}");
        }
        for text in ["", "yes", "tRUE", "on", "2"] {
            assert_eq!(parse_bool(text), None, "{text}");
        }
    }

    #[test]
    fn unsigned_integers_accept_go_base_prefixes() {
        assert_eq!(parse_uint("100", 64), Ok(100));
        assert_eq!(parse_uint("0", 64), Ok(0));
        assert_eq!(parse_uint("0x10", 64), Ok(16));
        assert_eq!(parse_uint("0X1f", 64), Ok(31));
        assert_eq!(parse_uint("010", 64), Ok(8));
        assert_eq!(parse_uint("0o17", 64), Ok(15));
        assert_eq!(parse_uint("0b101", 64), Ok(5));
        assert_eq!(parse_uint("1_000", 64), Ok(1000));
        assert_eq!(parse_uint("0x_1F", 64), Ok(31));
        assert_eq!(parse_uint("", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("0x", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("08", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("1__0", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("_1", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("1_", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("+1", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("-1", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("abc", 64), Err(IntError::Syntax));
        assert_eq!(parse_uint("4294967295", 32), Ok(u64::from(u32::MAX)));
        assert_eq!(parse_uint("4294967296", 32), Err(IntError::Range));
        assert_eq!(parse_uint("18446744073709551616", 64), Err(IntError::Range));
    }

    #[test]
    fn signed_integers_accept_signs_and_check_range() {
        assert_eq!(parse_int("-5", 64), Ok(-5));
        assert_eq!(parse_int("+5", 64), Ok(5));
        assert_eq!(parse_int("-0x10", 64), Ok(-16));
        assert_eq!(parse_int("9223372036854775807", 64), Ok(i64::MAX));
        assert_eq!(parse_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775808", 64), Err(IntError::Range));
        assert_eq!(parse_int("--5", 64), Err(IntError::Syntax));
        assert_eq!(parse_int("-", 64), Err(IntError::Syntax));
        assert_eq!(parse_int("-1_0", 64), Ok(-10));
    }

    #[test]
    fn durations_follow_time_parse_duration() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3\u{b5}s"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("+7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("1.0000000019s"), Ok(Duration::from_nanos(1_000_000_001)));
        assert_eq!(
            parse_duration("abc"),
            Err(DurationError::Go("time: invalid duration \"abc\"".into()))
        );
        assert_eq!(
            parse_duration(""),
            Err(DurationError::Go("time: invalid duration \"\"".into()))
        );
        assert_eq!(
            parse_duration("."),
            Err(DurationError::Go("time: invalid duration \".\"".into()))
        );
        assert_eq!(
            parse_duration("1"),
            Err(DurationError::Go("time: missing unit in duration \"1\"".into()))
        );
        assert_eq!(
            parse_duration("5x"),
            Err(DurationError::Go("time: unknown unit \"x\" in duration \"5x\"".into()))
        );
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("3000000h"),
            Err(DurationError::Go("time: invalid duration \"3000000h\"".into()))
        );
    }

    #[test]
    fn durations_format_like_go() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_nanos(10)), "10ns");
        assert_eq!(format_go_duration(Duration::from_micros(100)), "100\u{b5}s");
        assert_eq!(format_go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_go_duration(Duration::from_millis(5500)), "5.5s");
        assert_eq!(format_go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(format_go_duration(Duration::from_secs(600)), "10m0s");
        assert_eq!(format_go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn quoting_matches_go_percent_q() {
        assert_eq!(go_quote("abc"), "\"abc\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("caf\u{e9}"), "\"caf\u{e9}\"");
        assert_eq!(go_quote_list(&["a".into(), "b".into()]), "[\"a\" \"b\"]");
        assert_eq!(time_quote("\u{e9}"), "\"\\xc3\\xa9\"");
    }
}

//! Parsers for the field spellings flow files use: timestamps, seconds with
//! fractions, counts with `K`/`M`/`G` suffixes, float-spelled ports, ICMP
//! type and code, TCP flag masks.
//!
//! Each parser returns a short lowercase reason on failure; the reader adds
//! the file, line and column.

use chrono::NaiveDateTime;

use crate::flow::TcpFlags;

/// Why a field could not be parsed, as the error message will say it.
pub(crate) type Reason = &'static str;

/// Largest integer below `u64::MAX` that an `f64` holds exactly enough to convert back.
const MAX_COUNT_F64: f64 = 1.8e19;

/// Parses `2017-04-11 15:31:29.795` (fraction optional, `T` allowed as the
/// separator) as milliseconds since the Unix epoch, reading the time as UTC.
pub(crate) fn timestamp_ms(text: &str) -> Result<i64, Reason> {
    let text = text.trim();
    let parsed = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .map_err(|_| "not a timestamp like 2017-04-11 15:31:29.795")?;
    Ok(parsed.and_utc().timestamp_millis())
}

/// Parses a non-negative number of seconds (`0.639`) as whole milliseconds,
/// rounding to nearest; plain decimals convert exactly at any size.
pub(crate) fn seconds_as_ms(text: &str) -> Result<u64, Reason> {
    let text = text.trim();
    if let Some(ms) = exact_decimal_seconds_as_ms(text) {
        return ms;
    }
    let seconds = finite_non_negative(text).ok_or("not a non-negative number of seconds")?;
    let ms = (seconds * 1000.0).round();
    if ms > MAX_COUNT_F64 {
        return Err("duration out of range");
    }
    Ok(ms as u64)
}

/// Converts `digits[.digits]` without going through a float; `None` for other spellings.
fn exact_decimal_seconds_as_ms(text: &str) -> Option<Result<u64, Reason>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let mut ms_digits = fraction.bytes().chain(std::iter::repeat(b'0')).take(3);
    let fraction_ms = ms_digits.try_fold(0u64, |ms, d| Some(ms * 10 + u64::from(d - b'0')));
    let round_up = fraction.as_bytes().get(3).is_some_and(|&d| d >= b'5');
    let ms = whole
        .parse::<u64>()
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .and_then(|ms| ms.checked_add(fraction_ms? + u64::from(round_up)));
    Some(ms.ok_or("duration out of range"))
}

/// Parses a count as nfdump prints it: `1234`, `1234.0`, or scaled `1.2 M`
/// (`K`, `M`, `G`; nfdump scales by powers of 1000).
pub(crate) fn count(text: &str) -> Result<u64, Reason> {
    const REASON: Reason = "not a count (like 1234 or 1.2 M)";
    let text = text.trim();
    let (number, scale) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 1e3),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 1e6),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    if scale == 1.0 {
        if let Ok(n) = number.parse::<u64>() {
            return Ok(n);
        }
    }
    let value = finite_non_negative(number).ok_or(REASON)? * scale;
    if value > MAX_COUNT_F64 {
        return Err("count out of range");
    }
    if scale == 1.0 && value.fract() != 0.0 {
        return Err(REASON);
    }
    Ok(value.round() as u64)
}

/// Parses a port written as an integer or an integral float (`58844.0`).
pub(crate) fn port(text: &str) -> Result<u16, Reason> {
    integral_u16(text).ok_or("not a port number (0 to 65535)")
}

/// How a file spells an ICMP type and code in the destination port column.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IcmpSpelling {
    /// CIDDS-001: `type.code` (`3.3`); a bare integer is the type alone
    /// (some converted copies dropped the fraction), and a value above 255
    /// is already `type * 256 + code`.
    TypeDotCode,
    /// nfdump CSV: the integer `type * 256 + code` (`771`); `type.code` also accepted.
    Combined,
}

/// Parses the ICMP type and code from a destination-port field as `type * 256 + code`.
pub(crate) fn icmp_type_code(text: &str, spelling: IcmpSpelling) -> Result<u16, Reason> {
    const REASON: Reason = "not an icmp type.code (like 3.3)";
    let text = text.trim();
    if let Some((icmp_type, code)) = text.split_once('.') {
        let icmp_type: u8 = icmp_type.parse().map_err(|_| REASON)?;
        let code: u8 = code.parse().map_err(|_| REASON)?;
        return Ok(u16::from(icmp_type) << 8 | u16::from(code));
    }
    let value: u16 = text.parse().map_err(|_| REASON)?;
    match spelling {
        IcmpSpelling::TypeDotCode if value <= 0xff => Ok(value << 8),
        _ => Ok(value),
    }
}

/// Parses TCP flags: a `UAPRSF` mask with `.` for unset (CIDDS-001), nfdump's
/// eight-character `CEUAPRSF` mask, hexadecimal `0x1b`, or a decimal octet.
pub(crate) fn tcp_flags(text: &str) -> Result<TcpFlags, Reason> {
    const REASON: Reason = "not tcp flags (like .AP.SF or 0x1b)";
    const CE: [(u8, char); 2] = [(TcpFlags::CWR, 'C'), (TcpFlags::ECE, 'E')];
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16)
            .map(TcpFlags)
            .map_err(|_| REASON);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(TcpFlags).map_err(|_| REASON);
    }
    let positions: Vec<(u8, char)> = match text.len() {
        6 => TcpFlags::UAPRSF.to_vec(),
        8 => CE.iter().chain(TcpFlags::UAPRSF.iter()).copied().collect(),
        _ => return Err(REASON),
    };
    let mut flags = 0u8;
    for (c, (bit, letter)) in text.chars().zip(positions) {
        match c {
            '.' => {}
            c if c == letter => flags |= bit,
            _ => return Err(REASON),
        }
    }
    Ok(TcpFlags(flags))
}

/// Parses a type-of-service octet written as an integer or integral float.
pub(crate) fn tos(text: &str) -> Result<u8, Reason> {
    integral_u16(text)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or("not a type-of-service octet (0 to 255)")
}

fn integral_u16(text: &str) -> Option<u16> {
    let text = text.trim();
    if let Ok(v) = text.parse::<u16>() {
        return Some(v);
    }
    let value = finite_non_negative(text)?;
    (value.fract() == 0.0 && value <= f64::from(u16::MAX)).then_some(value as u16)
}

fn finite_non_negative(text: &str) -> Option<f64> {
    let text = text.trim();
    // Rust accepts `inf` and `nan`; real files never spell numbers that way.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_optional_milliseconds() {
        assert_eq!(
            timestamp_ms("2017-04-11 15:31:29.795"),
            Ok(1_491_924_689_795)
        );
        assert_eq!(timestamp_ms("2017-04-11 15:31:29"), Ok(1_491_924_689_000));
        assert_eq!(
            timestamp_ms("2017-04-11T15:31:29.795"),
            Ok(1_491_924_689_795)
        );
        assert_eq!(timestamp_ms(" 1970-01-01 00:00:00.001 "), Ok(1));
        assert!(timestamp_ms("2017-13-11 15:31:29").is_err());
        assert!(timestamp_ms("yesterday").is_err());
    }

    #[test]
    fn seconds_become_rounded_milliseconds() {
        assert_eq!(seconds_as_ms("0.639"), Ok(639));
        assert_eq!(seconds_as_ms("0.0"), Ok(0));
        assert_eq!(seconds_as_ms("12"), Ok(12_000));
        assert_eq!(seconds_as_ms("0.0005"), Ok(1));
        assert_eq!(seconds_as_ms("0.0004999"), Ok(0));
        assert_eq!(seconds_as_ms("1.5e2"), Ok(150_000));
        assert_eq!(seconds_as_ms("18446744073709551.615"), Ok(u64::MAX));
        assert!(seconds_as_ms("18446744073709552").is_err());
        assert!(seconds_as_ms("-1").is_err());
        assert!(seconds_as_ms("inf").is_err());
        assert!(seconds_as_ms("NaN").is_err());
        assert!(seconds_as_ms("1e300").is_err());
    }

    #[test]
    fn counts_accept_scaled_spellings() {
        assert_eq!(count("1234"), Ok(1234));
        assert_eq!(count("1234.0"), Ok(1234));
        assert_eq!(count("1.2 M"), Ok(1_200_000));
        assert_eq!(count("  3.5 K"), Ok(3_500));
        assert_eq!(count("2 G"), Ok(2_000_000_000));
        assert_eq!(count("18446744073709551615"), Ok(u64::MAX));
        assert!(count("1.5").is_err());
        assert!(count("M").is_err());
        assert!(count("-3").is_err());
        assert!(count("1e30 G").is_err());
    }

    #[test]
    fn ports_accept_integral_floats_only() {
        assert_eq!(port("58844.0"), Ok(58844));
        assert_eq!(port("80"), Ok(80));
        assert!(port("80.5").is_err());
        assert!(port("65536").is_err());
        assert!(port("").is_err());
    }

    #[test]
    fn icmp_type_and_code_follow_the_file_spelling() {
        assert_eq!(
            icmp_type_code("3.3", IcmpSpelling::TypeDotCode),
            Ok(3 * 256 + 3)
        );
        assert_eq!(
            icmp_type_code("11.0", IcmpSpelling::TypeDotCode),
            Ok(11 * 256)
        );
        assert_eq!(icmp_type_code("3", IcmpSpelling::TypeDotCode), Ok(3 * 256));
        assert_eq!(icmp_type_code("771", IcmpSpelling::TypeDotCode), Ok(771));
        assert_eq!(icmp_type_code("771", IcmpSpelling::Combined), Ok(771));
        assert_eq!(icmp_type_code("3", IcmpSpelling::Combined), Ok(3));
        assert!(icmp_type_code("3.300", IcmpSpelling::TypeDotCode).is_err());
        assert!(icmp_type_code("x.1", IcmpSpelling::Combined).is_err());
    }

    #[test]
    fn flags_accept_masks_hex_and_decimal() {
        assert_eq!(tcp_flags(".AP.SF"), Ok(TcpFlags(0x1b)));
        assert_eq!(tcp_flags("UAPRSF"), Ok(TcpFlags(0x3f)));
        assert_eq!(tcp_flags("......"), Ok(TcpFlags(0)));
        assert_eq!(tcp_flags("0x1b"), Ok(TcpFlags(0x1b)));
        assert_eq!(tcp_flags("CE.A..S."), Ok(TcpFlags(0xd2)));
        assert_eq!(tcp_flags("...AP.SF"), Ok(TcpFlags(0x1b)));
        assert_eq!(tcp_flags("27"), Ok(TcpFlags(0x1b)));
        assert!(tcp_flags("A.....").is_err());
        assert!(tcp_flags(".AP.S").is_err());
        assert!(tcp_flags("0x1ff").is_err());
    }

    #[test]
    fn tos_is_an_octet() {
        assert_eq!(tos("16"), Ok(16));
        assert_eq!(tos("0.0"), Ok(0));
        assert!(tos("256").is_err());
    }
}

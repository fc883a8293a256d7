//! Timestamps as the engines print them in `inspect`, to Unix time.
//! Docker: "2026-11-23T12:00:00.123456789Z"; Podman:
//! "2026-11-23 12:00:00.123456789 +0000 UTC". Go's zero time means "never".

pub fn parse_unix_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.len() < 19 || text.starts_with("0001-") {
        return None;
    }
    let (date, rest) = text.split_at(10);
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let rest = rest.strip_prefix(['T', ' '])?;
    let mut hms = rest.get(..8)?.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(local - utc_offset_secs(&rest[8..])?)
}

/// "Z", " +0100 CET", "+01:00" after the seconds (and fraction).
fn utc_offset_secs(zone: &str) -> Option<i64> {
    let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit()).trim_start();
    if zone.is_empty() || zone.starts_with('Z') {
        return Some(0);
    }
    let sign = match zone.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return Some(0),
    };
    let digits: String = zone[1..].chars().filter(char::is_ascii_digit).take(4).collect();
    if digits.len() != 4 {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    Some(sign * (hours * 3_600 + minutes * 60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_engines_formats() {
        assert_eq!(parse_unix_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_unix_time("2026-11-23T12:00:00.123456789Z"), Some(1_795_435_200));
        assert_eq!(parse_unix_time("2026-11-23 12:00:00.123456789 +0000 UTC"), Some(1_795_435_200));
        assert_eq!(parse_unix_time("2026-11-23 13:00:00.5 +0100 CET"), Some(1_795_435_200));
        assert_eq!(parse_unix_time("2026-11-23T07:00:00-05:00"), Some(1_795_435_200));
        assert_eq!(parse_unix_time("2000-03-01T00:00:00Z"), Some(951_868_800));
    }

    #[test]
    fn zero_and_garbage_are_none() {
        assert_eq!(parse_unix_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_unix_time(""), None);
        assert_eq!(parse_unix_time("yesterday at noon, roughly"), None);
        assert_eq!(parse_unix_time("2026-11-23T12:00:00 +01"), None);
    }
}

//! Timestamps as the engines print them in `inspect`, to Unix time.
//! Docker: "2026-11-23T12:00:00.123456789Z"; Podman:
//! "2026-11-23 12:00:00.123456789 +0000 UTC". Go's zero time means "never".

/// Engine output is not trusted to be well formed: any text gives a time or
/// None, never a panic (slicing a string at a byte that is not a character
/// boundary would abort the process).
pub fn parse_unix_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.starts_with("0001-") {
        return None;
    }
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let mut ymd = date.split('-').map(number);
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let rest = rest.strip_prefix(['T', ' '])?;
    let (clock, zone) = (rest.get(..8)?, rest.get(8..)?);
    let mut hms = clock.split(':').map(number);
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let in_range = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !in_range || ymd.next().is_some() || hms.next().is_some() {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(local - utc_offset_secs(zone)?)
}

/// Digits only (`parse` would also take a sign), so every field is small.
fn number(part: &str) -> Option<i64> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// "Z", " +0100 CET", "+01:00" after the seconds (and fraction).
fn utc_offset_secs(zone: &str) -> Option<i64> {
    let zone = zone
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit())
        .trim_start();
    let sign = match zone.chars().next() {
        None | Some('Z') => return Some(0),
        Some('+') => 1,
        Some('-') => -1,
        Some(_) => return Some(0),
    };
    let digits: Vec<i64> = zone
        .chars()
        .skip(1)
        .filter_map(|c| c.to_digit(10))
        .take(4)
        .map(i64::from)
        .collect();
    match digits[..] {
        [h1, h2, m1, m2] => Some(sign * ((h1 * 10 + h2) * 3_600 + (m1 * 10 + m2) * 60)),
        _ => None,
    }
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
        assert_eq!(
            parse_unix_time("2026-11-23T12:00:00.123456789Z"),
            Some(1_795_435_200)
        );
        assert_eq!(
            parse_unix_time("2026-11-23 12:00:00.123456789 +0000 UTC"),
            Some(1_795_435_200)
        );
        assert_eq!(
            parse_unix_time("2026-11-23 13:00:00.5 +0100 CET"),
            Some(1_795_435_200)
        );
        assert_eq!(
            parse_unix_time("2026-11-23T07:00:00-05:00"),
            Some(1_795_435_200)
        );
        assert_eq!(parse_unix_time("2000-03-01T00:00:00Z"), Some(951_868_800));
    }

    #[test]
    fn zero_and_garbage_are_none() {
        assert_eq!(parse_unix_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_unix_time(""), None);
        assert_eq!(parse_unix_time("yesterday at noon, roughly"), None);
        assert_eq!(parse_unix_time("2026-11-23T12:00:00 +01"), None);
        assert_eq!(parse_unix_time("2026-13-23T12:00:00Z"), None);
        assert_eq!(parse_unix_time("2026-11-23T12:+0:00Z"), None);
    }

    #[test]
    fn multibyte_text_at_the_slicing_points_is_none() {
        // A character straddling byte 10 (the date) or byte 8 of the clock.
        assert_eq!(parse_unix_time("2026-11-2é12:00:00Z"), None);
        assert_eq!(parse_unix_time("éééééééééééééééééééé"), None);
        assert_eq!(parse_unix_time("2026-11-23T12:00:0é+0100"), None);
        assert_eq!(parse_unix_time("2026-11-23T12:00:00 +é100"), None);
        assert_eq!(parse_unix_time("9999999999T99:99:99Z"), None);
    }

    mod props {
        use super::super::*;
        use crate::property_tests::config;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(config(2048))]

            #[test]
            fn any_text_parses_without_panic(text in "\\PC{0,40}") {
                let _ = parse_unix_time(&text);
            }

            #[test]
            fn timestamp_shaped_text_with_any_characters(
                date in "[0-9é-]{10}",
                sep in "[T é]",
                clock in "[0-9:é.]{8,12}",
                zone in "[ +\\-Z0-9:éA-Z]{0,10}",
            ) {
                let _ = parse_unix_time(&format!("{date}{sep}{clock}{zone}"));
            }

            #[test]
            fn valid_times_round_trip(secs in 0i64..4_102_444_800) {
                let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
                let (y, m, d) = civil_from_days(days);
                let text = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60);
                prop_assert_eq!(parse_unix_time(&text), Some(secs), "{}", text);
            }
        }

        /// The inverse of `days_from_civil` (Howard Hinnant's algorithm).
        fn civil_from_days(days: i64) -> (i64, i64, i64) {
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            (yoe + era * 400 + i64::from(m <= 2), m, d)
        }
    }
}

//! Human-readable sizes and durations for arguments and output.

use std::time::Duration;

/// Parses a size such as `500MB`, `10GiB` or `1048576` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| format!("invalid size '{text}': use bytes or a unit, e.g. 500MB or 10GiB"))
}

/// Parses a duration such as `24h`, `90min`, `2days` or `30s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("invalid duration '{text}': use a number and unit, e.g. 24h or 30min"))
}

/// Formats bytes with binary units (`1.5 GiB`).
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// Formats a duration for progress lines: `850 ms`, `12.3 s`, `4m05s`.
pub fn elapsed(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        let secs = duration.as_secs();
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_picks_a_readable_unit() {
        assert_eq!(elapsed(Duration::from_micros(850_400)), "850 ms");
        assert_eq!(elapsed(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(elapsed(Duration::from_secs(245)), "4m05s");
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("ten").unwrap_err().contains("'ten'"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90min"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("soon").unwrap_err().contains("'soon'"));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1536), "1.5 KiB");
    }
}

//! Python versions for [`crate::Image::debian_slim`]: which series are supported and which
//! exact release each series maps to, as the Daytona SDK pins them.
//!
//! Unlike Daytona, the default is the newest supported series, never the interpreter of the
//! machine running the build: the same definition must mean the same image everywhere.

use crate::error::{Result, SpecError};

/// Supported series, oldest first, each with the exact release it maps to.
const SERIES: [(&str, &str); 5] = [
    ("3.9", "3.9.22"),
    ("3.10", "3.10.17"),
    ("3.11", "3.11.12"),
    ("3.12", "3.12.10"),
    ("3.13", "3.13.3"),
];

/// The supported series (`3.9` .. `3.13`), oldest first.
pub fn supported_series() -> Vec<&'static str> {
    SERIES.iter().map(|(series, _)| *series).collect()
}

/// The exact release `debian_slim` uses for `version`.
///
/// `None` means the newest supported series. A series (`3.12`) maps to its pinned release
/// (`3.12.10`); an exact version (`3.12.4`, `3.13.0rc2`) is kept as given. The version must
/// match `^3(\.\d{1,2}){1,2}(rc\d*)?$` (else [`SpecError::InvalidPythonVersion`]) and its
/// series must be supported (else [`SpecError::UnsupportedPythonVersion`]).
pub fn resolve(version: Option<&str>) -> Result<String> {
    let Some(version) = version else {
        let (_, newest) = SERIES[SERIES.len() - 1];
        return Ok(newest.to_string());
    };
    if !is_well_formed(version) {
        return Err(SpecError::InvalidPythonVersion {
            version: version.to_string(),
        });
    }
    // Split as Daytona does: the series is the first two dot-separated parts, so `3.12rc1`
    // has series `3.12rc1`, which is not supported.
    let parts: Vec<&str> = version.split('.').collect();
    let series = format!("{}.{}", parts[0], parts[1]);
    let Some((_, pinned)) = SERIES.iter().find(|(s, _)| *s == series) else {
        return Err(SpecError::UnsupportedPythonVersion {
            version: version.to_string(),
            supported: supported_series(),
        });
    };
    Ok(if parts.len() == 2 {
        pinned.to_string()
    } else {
        version.to_string()
    })
}

/// `^3(\.\d{1,2}){1,2}(rc\d*)?$`, written out by hand.
fn is_well_formed(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('3') else {
        return false;
    };
    let (numbers, rc) = match rest.find("rc") {
        Some(at) => (&rest[..at], Some(&rest[at + 2..])),
        None => (rest, None),
    };
    if let Some(rc) = rc
        && !rc.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Some(numbers) = numbers.strip_prefix('.') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    (1..=2).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_map_to_pinned_releases() {
        assert_eq!(resolve(Some("3.9")).unwrap(), "3.9.22");
        assert_eq!(resolve(Some("3.10")).unwrap(), "3.10.17");
        assert_eq!(resolve(Some("3.11")).unwrap(), "3.11.12");
        assert_eq!(resolve(Some("3.12")).unwrap(), "3.12.10");
        assert_eq!(resolve(Some("3.13")).unwrap(), "3.13.3");
    }

    #[test]
    fn default_is_newest_series() {
        assert_eq!(resolve(None).unwrap(), "3.13.3");
    }

    #[test]
    fn exact_versions_are_kept() {
        assert_eq!(resolve(Some("3.12.4")).unwrap(), "3.12.4");
        assert_eq!(resolve(Some("3.11.0rc2")).unwrap(), "3.11.0rc2");
        assert_eq!(resolve(Some("3.10.1rc")).unwrap(), "3.10.1rc");
    }

    #[test]
    fn malformed_versions_are_invalid() {
        for bad in [
            "2.7", "3", "3.", "3.123", "3.12.", "3.12.1.1", "3.12x", "v3.12", "", "3.12rcx",
        ] {
            match resolve(Some(bad)) {
                Err(SpecError::InvalidPythonVersion { version }) => assert_eq!(version, bad),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_series_lists_the_supported_ones() {
        for old in ["3.8", "3.8.10", "3.14", "3.12rc1"] {
            match resolve(Some(old)) {
                Err(SpecError::UnsupportedPythonVersion { version, supported }) => {
                    assert_eq!(version, old);
                    assert_eq!(supported, ["3.9", "3.10", "3.11", "3.12", "3.13"]);
                }
                other => panic!("{old:?}: {other:?}"),
            }
        }
        let message = resolve(Some("3.8")).unwrap_err().to_string();
        assert!(message.contains("3.9, 3.10, 3.11, 3.12, 3.13"), "{message}");
    }
}

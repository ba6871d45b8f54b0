//! [`Platform`]: the os, architecture and variant an image runs on.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// An os/architecture\[/variant\] triple as OCI image indexes and configs spell it
/// (`linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: Cow<'static, str>,
    architecture: Cow<'static, str>,
    variant: Option<Cow<'static, str>>,
}

impl Platform {
    /// `linux/amd64`: what Lamina builds and runs.
    pub const LINUX_AMD64: Platform = Platform {
        os: Cow::Borrowed("linux"),
        architecture: Cow::Borrowed("amd64"),
        variant: None,
    };

    /// A platform from its parts, architecture aliases normalised as in [`Platform::parse`].
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, implied) = normalize_architecture(architecture);
        let variant = variant.filter(|v| !v.is_empty()).or(implied);
        let variant = match (architecture, variant) {
            // v8 is the only arm64 there is; indexes write it or leave it out.
            ("arm64", Some("v8")) => None,
            (_, v) => v,
        };
        Platform {
            os: Cow::Owned(os.to_owned()),
            architecture: Cow::Owned(architecture.to_owned()),
            variant: variant.map(|v| Cow::Owned(v.to_owned())),
        }
    }

    /// Parses `os/architecture[/variant]`. Architecture aliases are normalised as containerd
    /// does (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`).
    pub fn parse(input: &str) -> Result<Platform, ParseError> {
        let fail = |reason| ParseError::Platform {
            input: input.to_owned(),
            reason,
        };
        let parts: Vec<&str> = input.split('/').collect();
        let (os, architecture, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(fail("expected os/architecture[/variant], e.g. linux/amd64")),
        };
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if ![os, architecture].into_iter().chain(variant).all(word) {
            return Err(fail(
                "each part is lowercase letters, digits and `_`, e.g. linux/arm64/v8",
            ));
        }
        Ok(Platform::new(os, architecture, variant))
    }

    /// The operating system: `linux`.
    pub fn os(&self) -> &str {
        &self.os
    }

    /// The CPU architecture in Go's spelling: `amd64`, `arm64`.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// The CPU variant, if any: `v7`.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// Whether an index entry or config with these fields serves this platform: os and
    /// architecture equal (after alias normalisation), and the variant equal when this
    /// platform names one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let other = Platform::new(os, architecture, variant);
        other.os == self.os
            && other.architecture == self.architecture
            && (self.variant.is_none() || other.variant == self.variant)
    }
}

/// Go's architecture name for common aliases, with the variant an alias implies.
fn normalize_architecture(architecture: &str) -> (&str, Option<&'static str>) {
    match architecture {
        "x86_64" | "x86-64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "i386" | "i686" => ("386", None),
        other => (other, None),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Platform({self})")
    }
}

impl FromStr for Platform {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for (input, shown) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/armhf", "linux/arm/v7"),
            ("windows/amd64", "windows/amd64"),
        ] {
            assert_eq!(
                Platform::parse(input).unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        assert_eq!(
            Platform::parse("linux/amd64").unwrap(),
            Platform::LINUX_AMD64
        );
        assert_eq!(Platform::LINUX_AMD64.os(), "linux");
        assert_eq!(Platform::LINUX_AMD64.architecture(), "amd64");
        assert_eq!(Platform::LINUX_AMD64.variant(), None);
    }

    #[test]
    fn bad_text_is_refused_with_the_input_named() {
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "Linux/AMD64",
            "linux/amd 64",
        ] {
            let err = Platform::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn matching_index_entries() {
        let amd64 = Platform::LINUX_AMD64;
        assert!(amd64.matches("linux", "amd64", None));
        assert!(
            amd64.matches("linux", "amd64", Some("v3")),
            "no variant asked: any"
        );
        assert!(amd64.matches("linux", "x86_64", None));
        assert!(!amd64.matches("linux", "arm64", None));
        assert!(!amd64.matches("windows", "amd64", None));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(v7.matches("linux", "arm", Some("v7")));
        assert!(!v7.matches("linux", "arm", Some("v6")));
        assert!(!v7.matches("linux", "arm", None));
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(arm64.matches("linux", "arm64", Some("v8")));
        assert!(arm64.matches("linux", "aarch64", None));
    }
}

//! [`Reference`]: an image reference, parsed and normalised by Docker's rules.
//!
//! The grammar is distribution/reference's:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [registry "/"] path
//! registry   := host [":" port]        host: DNS labels, or "[" IPv6 "]"
//! path       := component ("/" component)*
//! component  := [a-z0-9]+ (separator [a-z0-9]+)*     separator: "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! Normalisation (Docker's `ParseNormalizedNamed`): the first path component is a registry
//! only when it contains `.` or `:`, is `localhost`, or has an uppercase letter; otherwise
//! the registry is `docker.io`, and a one-component path on `docker.io` gets `library/`.
//! `index.docker.io` is `docker.io`. So `python:3.12`, `library/python:3.12` and
//! `docker.io/library/python:3.12` are one reference.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, ParseError};

/// The registry of names that do not say one.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of names that have neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// An older spelling of [`DEFAULT_REGISTRY`], still accepted.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Where Docker Hub's official images live.
const OFFICIAL_NAMESPACE: &str = "library/";
/// Longest `registry/path`, as distribution allows.
const MAX_NAME_LEN: usize = 255;
/// Longest tag.
const MAX_TAG_LEN: usize = 128;

/// An image reference: registry, repository path, optional tag and optional digest, always in
/// normalised form (equal references compare equal however they were written).
///
/// `Display` gives the full canonical form (`docker.io/library/python:3.12`);
/// [`Reference::familiar`] gives the short form `docker images` shows (`python:3.12`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input` (`python`, `org/app:1`, `host:5000/app@sha256:…`).
    /// No tag is added; see [`Reference::with_default_tag`].
    pub fn parse(input: &str) -> Result<Reference, ParseError> {
        let fail = |reason: String| ParseError::Reference {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("it is empty".into()));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(fail(
                "64 hex digits are an image ID, not a name; write name@sha256:<hex>".into(),
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            None => (input, None),
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|_| {
                    fail(format!(
                        "{digest:?} is not a digest: write name@sha256:<64 lowercase hex digits>"
                    ))
                })?;
                (rest, Some(digest))
            }
        };
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("the repository name is missing".into()));
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(fail(format!(
                "tag {tag:?} is invalid: use up to 128 letters, digits, `_`, `.` and `-`, \
                 not starting with `.` or `-`"
            )));
        }
        let (registry, path) = split_registry(name);
        if !valid_registry(registry) {
            return Err(fail(format!(
                "registry {registry:?} is not a host name or host:port"
            )));
        }
        if path.chars().any(|c| c.is_uppercase()) {
            return Err(fail(format!("repository name {path:?} must be lowercase")));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(fail(format!(
                "path component {bad:?} of {path:?} is invalid: use lowercase letters and \
                 digits separated by `.`, `_`, `__` or dashes"
            )));
        }
        let registry = match registry {
            LEGACY_DEFAULT_REGISTRY => DEFAULT_REGISTRY,
            other => other,
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail(format!(
                "the name {registry}/{repository} is longer than {MAX_NAME_LEN} characters"
            )));
        }
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// This reference with tag `latest` when it has neither a tag nor a digest, as
    /// `docker pull`, `docker tag` and `FROM` read a bare name.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path on the registry: `library/python`, `org/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short name `docker images` shows: `docker.io/` and a `library/` of official images
    /// left out (`python`, `org/app`, `localhost:5000/app`).
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        match self.repository.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(short) if !short.contains('/') => short.to_owned(),
            _ => self.repository.clone(),
        }
    }

    /// The short form with tag and digest: `python:3.12`, `org/app@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_tag_and_digest(&mut out);
        out
    }

    /// Replaces the tag.
    pub fn with_tag(mut self, tag: &str) -> Result<Reference, ParseError> {
        if !valid_tag(tag) {
            return Err(ParseError::Reference {
                input: format!("{}:{tag}", self.name()),
                reason: format!("tag {tag:?} is invalid"),
            });
        }
        self.tag = Some(tag.to_owned());
        Ok(self)
    }

    /// Replaces the digest.
    pub fn with_digest(mut self, digest: Digest) -> Reference {
        self.digest = Some(digest);
        self
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The full canonical form: `docker.io/library/python:3.12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_tag_and_digest(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits off the registry by Docker's rule; a name without one is on `docker.io`.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// `host[:port]`, the host being DNS labels (an IPv4 address is one) or `[IPv6]`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => ("", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let host_ok = registry.starts_with('[') || host.split('.').all(valid_dns_label);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[A-Za-z0-9]` or `[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]`.
fn valid_dns_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `[a-z0-9]+` runs joined by one `.`, one or two `_`, or any number of `-`.
fn valid_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == run {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests;

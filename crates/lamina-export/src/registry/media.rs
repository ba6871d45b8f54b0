//! Media types the registry client speaks, and telling manifests from indexes.

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, v2 schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What a pull asks for in `Accept`.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] =
    &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// What a manifest document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ManifestKind {
    /// An image manifest (OCI or Docker v2 schema 2).
    Image,
    /// An index or manifest list.
    Index,
    /// Anything else (schema 1, artifacts without layers...): its media type or a
    /// description.
    Other(String),
}

/// Classifies manifest bytes by their `mediaType`, or by shape when it is absent (OCI makes
/// the field optional).
pub(crate) fn manifest_kind(bytes: &[u8]) -> ManifestKind {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return ManifestKind::Other("a document that is not JSON".into());
    };
    if value.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return ManifestKind::Other("a manifest that is not schema version 2".into());
    }
    match value.get("mediaType").and_then(|v| v.as_str()) {
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => ManifestKind::Image,
        Some(OCI_INDEX | DOCKER_LIST) => ManifestKind::Index,
        Some(other) => ManifestKind::Other(other.to_owned()),
        None if value.get("manifests").is_some() => ManifestKind::Index,
        None if value.get("layers").is_some() => ManifestKind::Image,
        None => ManifestKind::Other("a manifest without media type or layers".into()),
    }
}

/// The `Content-Type` to push a stored manifest with.
pub(crate) fn manifest_content_type(bytes: &[u8]) -> &'static str {
    let media_type = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    match media_type.as_deref() {
        Some(DOCKER_MANIFEST) => DOCKER_MANIFEST,
        _ => OCI_MANIFEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#;
        assert_eq!(manifest_kind(docker), ManifestKind::Image);
        assert_eq!(manifest_content_type(docker), DOCKER_MANIFEST);
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_kind(bare_index), ManifestKind::Index);
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(manifest_kind(bare), ManifestKind::Image);
        assert_eq!(manifest_content_type(bare), OCI_MANIFEST);
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(manifest_kind(v1), ManifestKind::Other(_)));
        assert!(matches!(manifest_kind(b"nope"), ManifestKind::Other(_)));
    }
}

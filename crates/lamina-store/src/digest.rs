//! Digests: blake3 (the store's address) and sha256 (what OCI speaks). The type is the
//! workspace's one [`Digest`], from `lamina-types`.

pub(crate) use lamina_types::digest::{hex, unhex32};
pub use lamina_types::{Algorithm, Digest};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let d = Digest::blake3_of(b"hello");
        let text = d.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(Digest::parse(&text).unwrap(), d);
        assert_eq!(unhex32(&d.hex()), Some(*d.as_bytes()));
        assert_eq!(hex(d.as_bytes()), d.hex());
    }
}

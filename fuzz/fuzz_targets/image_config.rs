//! Image configs, manifests and indexes as any tool might write them: parsing never panics;
//! every config the ingest pipeline accepts (import, pull) is one the executor reads too, so
//! no stored base can fail a build later; and the executor's canonical form of a config is
//! a fixed point (re-serialized, it parses to the same bytes).
#![no_main]

use lamina_exec::build::canonical_config;
use lamina_export::ingest::{parse_config, parse_index, parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let accepted = parse_config("fuzz", data);
    let canonical = canonical_config(data);
    if accepted.is_ok()
        && let Err(reason) = &canonical
    {
        panic!(
            "ingest accepts a config the executor refuses ({reason}): {}",
            String::from_utf8_lossy(data)
        );
    }
    if let Ok(bytes) = canonical {
        let again = canonical_config(&bytes)
            .unwrap_or_else(|reason| panic!("canonical config does not parse: {reason}"));
        assert_eq!(
            again,
            bytes,
            "canonical form changed on a second pass: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let _ = parse_manifest("fuzz", data);
    let _ = parse_index("fuzz", data);
});

use super::*;

fn layer(n: u8) -> CacheLayer {
    CacheLayer {
        digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        size: 10,
        compression: "gzip".into(),
        diff_id: format!("sha256:{}", "ab".repeat(32)),
        tar: format!("blake3:{}", "cd".repeat(32)),
        tar_size: 20,
    }
}

fn record(key: &str, created: u64, layer: Option<CacheLayer>) -> CacheRecord {
    CacheRecord {
        key: key.into(),
        created,
        text: "RUN x".into(),
        inputs: "00".repeat(32),
        config: "{}".into(),
        layer,
    }
}

#[test]
fn a_writer_keeps_its_earlier_records_unless_replaced() {
    let mut now = CacheDocument {
        version: VERSION,
        records: vec![record("a", 20, Some(layer(1)))],
        builds: Vec::new(),
    };
    let earlier = CacheDocument {
        version: VERSION,
        records: vec![record("a", 10, None), record("b", 10, Some(layer(2)))],
        builds: Vec::new(),
    };
    merge_into(&mut now, earlier);
    assert_eq!(now.records.len(), 2);
    assert_eq!(
        now.records[0].created, 20,
        "the new record replaces the old"
    );
    assert_eq!(now.records[1].key, "b");
    // Each blob once in the manifest, with its media type.
    now.records.push(record("c", 30, Some(layer(1))));
    let layers = document_layers(&now);
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn documents_round_trip_and_name_their_version() {
    let document = CacheDocument {
        version: VERSION,
        records: vec![record("k", 1, Some(layer(3)))],
        builds: vec![CacheBuild {
            shape: "s".into(),
            created: 1,
            steps: serde_json::json!([{"index": 1}]),
            layers: vec![layer(4)],
        }],
    };
    let text = serde_json::to_string(&document).unwrap();
    assert!(text.starts_with("{\"version\":1,"), "{text}");
    let back: CacheDocument = serde_json::from_str(&text).unwrap();
    assert_eq!(back, document);
}

#[test]
fn writer_tags_extend_the_cache_tag() {
    let reference: Reference = "127.0.0.1:5000/team/cache:main".parse().unwrap();
    let (target, tag) = writer_reference(&reference, "0123456789abcdef").unwrap();
    assert_eq!(tag, "main.lamina-0123456789abcdef");
    assert_eq!(target.repository(), "team/cache");
    let long: Reference = format!("r:5000/c:{}", "t".repeat(120)).parse().unwrap();
    assert!(writer_reference(&long, "0123456789abcdef").is_err());
}

#[test]
fn prune_drops_entries_as_old_as_the_limit_and_zero_drops_all() {
    let hour = Duration::from_secs(3600);
    assert!(outlives_prune(1_000, 1_000, hour), "exported this second");
    assert!(outlives_prune(1_000, 1_000 + 3599, hour));
    assert!(
        !outlives_prune(1_000, 1_000 + 3600, hour),
        "an hour old is pruned"
    );
    assert!(
        !outlives_prune(1_000, 1_000, Duration::ZERO),
        "0 drops what was just exported"
    );
    assert!(
        outlives_prune(2_000, 1_000, hour),
        "a writer's clock ahead of ours is young"
    );
}

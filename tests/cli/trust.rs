//! CA trust of RUN steps on a real Debian base through the binary: apt over https through the
//! host's CAs, Debian's own CA tooling (`apt-get install ca-certificates`,
//! `update-ca-certificates`), `rm` and `mv` of the bundle, and no host CA in any layer.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use lamina::export::StoredImage;
use lamina::store::{Store, StoreOptions};

use crate::debian::{bookworm_layout, bookworm_mirror};
use crate::support::{lamina_in_store, write_tree};

const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

const DOCKERFILE: &str = r#"FROM debian-ca:test AS tools
ARG MIRROR
# apt's https (GnuTLS) reads only the system store.
RUN echo "deb $MIRROR bookworm main" > /etc/apt/sources.list \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates curl >/dev/null

FROM tools AS trusted
ARG MIRROR
COPY my-ca.crt /usr/local/share/ca-certificates/
RUN update-ca-certificates
# Leaves the bundle alone: the image's bundle plus the host's CAs still work, curl without
# the environment variables reads the system bundle.
RUN apt-get update -qq \
 && env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -fsS -o /dev/null "$MIRROR/dists/bookworm/Release"

FROM trusted AS removed
RUN rm /etc/ssl/certs/ca-certificates.crt

FROM trusted AS moved
RUN mv /etc/ssl/certs/ca-certificates.crt /root/moved.crt

FROM debian-ca:test AS bare
RUN test -s /etc/ssl/certs/ca-certificates.crt && echo hi > /hi
"#;

/// The PEM certificate blocks of `text`.
fn pem_blocks(text: &str) -> BTreeSet<String> {
    let end = "-----END CERTIFICATE-----";
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once(end)
                .map(|(body, _)| body.trim().to_string())
        })
        .collect()
}

/// Every certificate block of the files below `dir`.
fn blocks_below(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            blocks_below(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.extend(pem_blocks(&text));
        }
    }
}

/// The image's layers above the base, unpacked in order into a temporary directory (the base
/// has no /etc/ssl, so below it this is the image's view), and each layer alone.
fn layers_above_base(store: &Store, name: &str) -> (tempfile::TempDir, Vec<tempfile::TempDir>) {
    let image = StoredImage::load_named(store, name).unwrap().unwrap();
    let merged = tempfile::tempdir().unwrap();
    let mut each = Vec::new();
    for layer in &image.layers[1..] {
        let unpack = |dir: &Path| {
            // A blob, or the tar of a tree-backed layer reassembled.
            let (_, tar) =
                lamina::image::layer_tar::open_blob_or_tree(store, &layer.variant.digest)
                    .unwrap()
                    .unwrap();
            lamina::layer::Unpacker::default()
                .unpack(std::io::BufReader::new(tar), dir)
                .unwrap();
        };
        unpack(merged.path());
        let alone = tempfile::tempdir().unwrap();
        unpack(alone.path());
        each.push(alone);
    }
    (merged, each)
}

#[test]
fn debian_ca_tooling_works_and_host_cas_stay_out_of_every_layer() {
    use crate::require::Need::{Root, Tool};
    if crate::build::sandbox_missing()
        || crate::require::missing(&[Root, Tool("debootstrap"), Tool("umoci"), Tool("openssl")])
    {
        return;
    }
    let layout = bookworm_layout();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    write_tree(&ctx, &[("Dockerfile", DOCKERFILE)]);
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lamina test CA",
            "-keyout",
        ])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(ctx.join("my-ca.crt"))
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(made.status.success(), "{made:?}");
    let my_ca = pem_blocks(&std::fs::read_to_string(ctx.join("my-ca.crt")).unwrap());

    let store = dir.path().join("store");
    let store_arg = store.to_str().unwrap();
    let layout_arg = format!("{}", layout.display());
    lamina_in_store(
        dir.path(),
        store_arg,
        &["image", "import", &layout_arg, "debian-ca:test"],
    );
    let https = bookworm_mirror().replacen("http://", "https://", 1);
    let mirror_arg = format!("MIRROR={https}");
    for target in ["trusted", "removed", "moved", "bare"] {
        lamina_in_store(
            dir.path(),
            store_arg,
            &[
                "build",
                "ctx",
                "--target",
                target,
                "--tag",
                target,
                "--build-arg",
                &mirror_arg,
                "--progress",
                "plain",
            ],
        );
    }
    let store = Store::open(&store, StoreOptions::default()).unwrap();

    // The bundle is what update-ca-certificates wrote: Debian's CAs and mine, none of the
    // host's that the image lacks.
    let (trusted, layers) = layers_above_base(&store, "trusted");
    let bundle = pem_blocks(&std::fs::read_to_string(trusted.path().join(BUNDLE)).unwrap());
    assert!(my_ca.is_subset(&bundle), "my CA is in the bundle");
    let mut image_certs = BTreeSet::new();
    blocks_below(
        &trusted.path().join("usr/share/ca-certificates"),
        &mut image_certs,
    );
    blocks_below(
        &trusted.path().join("usr/local/share/ca-certificates"),
        &mut image_certs,
    );
    let foreign: Vec<_> = bundle.difference(&image_certs).collect();
    assert!(
        foreign.is_empty(),
        "{} certificates are not the image's",
        foreign.len()
    );
    // Layers: apt install, COPY, update-ca-certificates, apt-get update + curl. The last one
    // left the bundle alone: no entry.
    assert_eq!(layers.len(), 4);
    assert!(layers[0].path().join(BUNDLE).is_file());
    assert!(!layers[3].path().join(BUNDLE).exists());
    assert!(layers[3].path().join("var/lib/apt/lists").is_dir());

    let (removed, _) = layers_above_base(&store, "removed");
    assert!(!removed.path().join(BUNDLE).exists());
    let (moved, _) = layers_above_base(&store, "moved");
    assert!(!moved.path().join(BUNDLE).exists());
    let moved_bundle = std::fs::read(moved.path().join("root/moved.crt")).unwrap();
    assert_eq!(
        moved_bundle,
        std::fs::read(trusted.path().join(BUNDLE)).unwrap()
    );

    let (bare, _) = layers_above_base(&store, "bare");
    assert!(bare.path().join("hi").is_file());
    assert!(!bare.path().join("etc/ssl").exists());
}

//! The test tables of distribution/reference (normalize and reference tests), as Rust.

use super::*;

const HEX: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

fn full(input: &str) -> String {
    Reference::parse(input)
        .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
        .to_string()
}

#[test]
fn valid_names_parse() {
    for name in [
        "docker/docker",
        "library/debian",
        "debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "[fc00::1]:5000/docker/docker",
        "[::1]/app",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        // With a registry, 64 hex digits are a name, not an image ID.
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
        "test_com",
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "xn--n3h.com/myimage:xn--n3h.com",
        "foo/foo_bar.com:8080",
        "localhost/app",
        "Uppercase.Host/app",
    ] {
        if let Err(e) = Reference::parse(name) {
            panic!("{name:?} should parse: {e}");
        }
    }
}

#[test]
fn invalid_names_are_refused_naming_the_input() {
    let too_long = format!("example.com/{}a:tag", "a/".repeat(122));
    for name in [
        "",
        ":",
        ":justtag",
        "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "x@sha256:zz",
        "x@sha256:",
        "BAD NAME",
        "bad name",
        "https://github.com/docker/docker",
        "docker/Docker",
        "-docker",
        "-docker/docker",
        "-docker.io/docker/docker",
        "docker///docker",
        "docker.io/docker/Docker",
        "docker.io/docker///docker",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "docker-/docker",
        "-docker-/docker",
        "____/____",
        "_docker/_docker",
        "dock..er/docker",
        "dock_.er/docker",
        "dock-.er/docker",
        "dock___er/docker",
        "docker/",
        "aa/asdf$$^/aa",
        "app:",
        "app:-tag",
        "app:.tag",
        &format!("app:{}", "t".repeat(129)),
        "host:port/app",
        "[zz::1]:5000/app",
        "localhost:/app",
        &too_long,
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
    ] {
        match Reference::parse(name) {
            Ok(r) => panic!("{name:?} should be refused, parsed as {r}"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&format!("{name:?}")), "{text}");
                assert!(!text.contains('\n'), "one line: {text}");
            }
        }
    }
}

#[test]
fn the_name_length_limit_counts_the_registry() {
    let at_limit = format!("example.com/{}a", "a/".repeat(121));
    assert_eq!(at_limit.len(), 255);
    assert!(Reference::parse(&format!("{at_limit}:tag-puts-this-over-max")).is_ok());
    assert!(Reference::parse(&format!("{at_limit}a")).is_err());
}

/// distribution's TestParseRepositoryInfo: every spelling gives the same familiar name,
/// full name, registry and path.
#[test]
fn spellings_of_one_repository_meet() {
    let cases: [(&str, &str, &str, &str, &[&str]); 14] = [
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            "docker.io",
            &["index.docker.io/fooo/bar"],
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            "docker.io",
            &["library/ubuntu"],
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "docker.io",
            &[],
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            "docker.io",
            &[],
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000",
            &[],
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000",
            &[],
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "example.com",
            &[],
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            "example.com",
            &[],
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000",
            &[],
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000",
            &[],
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "docker.io",
            &["index.docker.io/library/ubuntu-12.04-base"],
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            "docker.io",
            &["docker.io/foo"],
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "docker.io",
            &[],
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "docker.io",
            &[],
        ),
    ];
    for (path, familiar, full_name, registry, others) in cases {
        let spellings = [familiar, full_name]
            .into_iter()
            .chain(others.iter().copied());
        for spelling in spellings {
            let r = Reference::parse(spelling).unwrap();
            assert_eq!(r.familiar_name(), familiar, "{spelling}");
            assert_eq!(r.familiar(), familiar, "{spelling}");
            assert_eq!(r.to_string(), full_name, "{spelling}");
            assert_eq!(r.registry(), registry, "{spelling}");
            assert_eq!(r.repository(), path, "{spelling}");
        }
    }
}

/// distribution's TestNormalizedSplitHostname.
#[test]
fn the_registry_is_split_off_by_dockers_rule() {
    for (input, registry, path) in [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/foo", "localhost:5000", "foo"),
        ("Host/foo", "Host", "foo"),
        ("test.com:5000", "docker.io", "library/test.com"),
        ("foo_bar.com:8080", "docker.io", "library/foo_bar.com"),
    ] {
        let r = Reference::parse(input).unwrap();
        assert_eq!((r.registry(), r.repository()), (registry, path), "{input}");
    }
}

/// distribution's TestParseAnyReference (the named cases) and the examples.
#[test]
fn short_and_full_forms_are_one_reference() {
    for (short, long) in [
        ("redis", "docker.io/library/redis"),
        ("redis:latest", "docker.io/library/redis:latest"),
        (
            "docker.io/library/redis:latest",
            "docker.io/library/redis:latest",
        ),
        (
            format!("redis@sha256:{HEX}").as_str(),
            format!("docker.io/library/redis@sha256:{HEX}").as_str(),
        ),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        (
            "docker.io/mcgowan/myapp:latest",
            "docker.io/mcgowan/myapp:latest",
        ),
        (
            format!("dmcgowan/myapp@sha256:{HEX}").as_str(),
            format!("docker.io/dmcgowan/myapp@sha256:{HEX}").as_str(),
        ),
        (
            &HEX[..63],
            format!("docker.io/library/{}", &HEX[..63]).as_str(),
        ),
        (
            "python:3.12.10-slim-bookworm",
            "docker.io/library/python:3.12.10-slim-bookworm",
        ),
        ("org/app", "docker.io/org/app"),
    ] {
        assert_eq!(full(short), long, "{short}");
        assert_eq!(
            Reference::parse(short).unwrap(),
            Reference::parse(long).unwrap()
        );
        assert_eq!(full(&full(short)), long, "the full form is a fixed point");
    }
}

#[test]
fn a_bare_name_gets_the_latest_tag_and_a_digest_keeps_none() {
    let tagged = |s: &str| Reference::parse(s).unwrap().with_default_tag().to_string();
    assert_eq!(tagged("org/app"), "docker.io/org/app:latest");
    assert_eq!(tagged("python:3.12"), "docker.io/library/python:3.12");
    assert_eq!(tagged("localhost:5000/app"), "localhost:5000/app:latest");
    assert_eq!(
        tagged(&format!("app@sha256:{HEX}")),
        format!("docker.io/library/app@sha256:{HEX}")
    );
    assert_eq!(Reference::parse("app").unwrap().tag(), None);
}

/// distribution's TestParseReferenceWithTagAndDigest.
#[test]
fn tag_and_digest_together() {
    let short = format!("busybox:latest@sha256:{HEX}");
    let r = Reference::parse(&short).unwrap();
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(r.familiar(), short);
    assert_eq!(r.tag(), Some("latest"));
    assert_eq!(r.digest().unwrap().to_string(), format!("sha256:{HEX}"));
}

#[test]
fn familiar_forms_match_docker_images() {
    for (input, familiar) in [
        ("docker.io/library/python:3.12", "python:3.12"),
        ("index.docker.io/org/app:1", "org/app:1"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("example.invalid/base:1", "example.invalid/base:1"),
        ("docker.io/library/a/b:1", "library/a/b:1"),
    ] {
        assert_eq!(
            Reference::parse(input).unwrap().familiar(),
            familiar,
            "{input}"
        );
    }
}

#[test]
fn tags_follow_the_grammar() {
    for tag in [
        "latest",
        "TAG5",
        "_x",
        "3.12.10-slim-bookworm",
        &"t".repeat(128),
    ] {
        let r = Reference::parse("test.com:8000/foo")
            .unwrap()
            .with_tag(tag)
            .unwrap();
        assert_eq!(r.to_string(), format!("test.com:8000/foo:{tag}"));
    }
    for tag in ["", "-foo", ".x", "a b", "a/b", &"t".repeat(129)] {
        assert!(
            Reference::parse("busybox").unwrap().with_tag(tag).is_err(),
            "{tag:?}"
        );
    }
}

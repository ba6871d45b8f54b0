use super::*;

const DIFF: &str = "sha256:56c6837ca660a6fc33a21945e0bb83be760f60c6719b3c78df32de79dc3e098a";

fn docker_config(run: &str) -> String {
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{run},"container_config":{{"Cmd":["x"]}},"rootfs":{{"type":"layers","diff_ids":["{DIFF}"]}},"history":null}}"#
    )
}

#[test]
fn nulls_read_as_absent() {
    let text = docker_config(
        r#"{"Env":null,"Cmd":null,"Entrypoint":null,"Volumes":null,"ExposedPorts":null,"OnBuild":null,"Labels":null,"Healthcheck":null,"Shell":null,"User":""}"#,
    );
    let config = parse_config("img", text.as_bytes()).unwrap();
    let run = config.config().as_ref().unwrap();
    assert_eq!(run.env(), &None);
    assert_eq!(run.volumes(), &None);
    assert_eq!(config.rootfs().diff_ids(), &vec![DIFF.to_owned()]);
    // `"config": null` and no diff_ids (an image without layers) read too.
    let bare = r#"{"architecture":"amd64","os":"linux","config":null,"rootfs":{"type":"layers"}}"#;
    let config = parse_config("img", bare.as_bytes()).unwrap();
    assert!(config.rootfs().diff_ids().is_empty());
}

#[test]
fn a_string_command_is_a_one_word_list_as_in_docker() {
    let text = docker_config(r#"{"Cmd":"serve","Entrypoint":"/bin/app"}"#);
    let config = parse_config("img", text.as_bytes()).unwrap();
    let run = config.config().as_ref().unwrap();
    assert_eq!(run.cmd().as_deref(), Some(&["serve".to_owned()][..]));
    assert_eq!(
        run.entrypoint().as_deref(),
        Some(&["/bin/app".to_owned()][..])
    );
}

#[test]
fn a_malformed_field_is_named_with_what_was_found() {
    for (run, field) in [
        (r#"{"Env":"PATH=/bin"}"#, "config.Env"),
        (r#"{"OnBuild":"RUN x"}"#, "config.OnBuild"),
        (
            r#"{"Healthcheck":{"Test":"CMD true"}}"#,
            "config.Healthcheck.Test",
        ),
        (r#"{"Labels":{"a":1}}"#, "config.Labels.a"),
    ] {
        let err = parse_config("app:1", docker_config(run).as_bytes()).unwrap_err();
        match &err {
            ImageError::MalformedConfig {
                reference,
                field: f,
                reason,
            } => {
                assert_eq!(reference, "app:1");
                assert_eq!(f, field, "{err}");
                assert!(reason.contains("invalid type"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().starts_with("image app:1: config field "),
            "{err}"
        );
    }
    for text in ["[]", "nope", "{\"architecture\":\"amd64\"}"] {
        assert!(parse_config("x", text.as_bytes()).is_err(), "{text}");
    }
}

#[test]
fn indexes_resolve_to_linux_amd64_or_say_what_they_offer() {
    let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
        {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":2,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"architecture":"amd64","os":"linux"},"annotations":null}]}"#;
    let index = parse_index("img", list).unwrap();
    assert_eq!(amd64_entry("img", &index).unwrap().size(), 2);
    let arm_only = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
    let index = parse_index("img", arm_only).unwrap();
    let err = amd64_entry("img", &index).unwrap_err();
    // Named as Docker normalises it (arm64/v8 is arm64).
    assert!(err.to_string().contains("(linux/arm64)"), "{err}");
}

//! Host CA trust for real: the merged bundle in a trust lower, the image's CA tooling free to
//! rewrite, rename or delete it, and the host's CAs never in the change.

use super::*;

const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
const IMAGE_CA: &str = "IMAGE CA\n";

/// A host bundle file named `name` holding `text`.
fn host_bundle(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.tmp.path().join(name);
    fs::write(&path, text).unwrap();
    path
}

/// Options on the base plus a layer with `files` (path, content; a `->` prefix makes a
/// symlink), trusting `host`.
fn on_layer(env: &Env, files: &[(&str, &str)], host: &Path) -> Opts {
    let tree = tempfile::tempdir_in(env.tmp.path()).unwrap();
    for (path, content) in files {
        let path = tree.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        match content.strip_prefix("->") {
            Some(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            None => fs::write(&path, content).unwrap(),
        }
    }
    let mut opts = env.opts();
    if !files.is_empty() {
        let layer = put_layer(&env.store, None, Some(tree.path()));
        opts.lowers.push(
            env.cache
                .unpacked(&env.store, &layer)
                .unwrap()
                .to_path_buf(),
        );
    }
    opts.mounts = vec![BuildMount::HostCaBundle {
        path: host.to_path_buf(),
    }];
    opts
}

fn with_bundle(env: &Env, host: &Path) -> Opts {
    on_layer(env, &[(BUNDLE, IMAGE_CA)], host)
}

/// Runs `script` (which must succeed) and returns the run and its stdout lines.
fn run_ok(env: &Env, script: &str, opts: Opts) -> (RunOutcome, Vec<String>) {
    let (out, lines) = env.sh(script, opts).unwrap();
    assert_eq!(out.exit_code, 0, "{script}: {lines:?}");
    let stdout = stdout(&lines).into_iter().map(str::to_owned).collect();
    (out, stdout)
}

fn read(out: &RunOutcome, rel: &str) -> Option<String> {
    fs::read_to_string(out.upper.path().join(rel)).ok()
}

#[test]
fn a_step_trusts_both_bundles_and_one_that_leaves_it_alone_leaves_no_entry() {
    let Some(env) = env() else { return };
    let host = host_bundle(&env, "host.pem", "HOST CA\n");
    let script = "cat /etc/ssl/certs/ca-certificates.crt; cat \"$SSL_CERT_FILE\"; \
                  echo $CURL_CA_BUNDLE $PIP_CERT; echo hi > /hi";
    let (out, lines) = run_ok(&env, script, with_bundle(&env, &host));
    assert_eq!(
        lines,
        [
            "IMAGE CA",
            "HOST CA",
            "IMAGE CA",
            "HOST CA",
            "/run/lamina/ca.pem /run/lamina/ca.pem"
        ]
    );
    assert_eq!(entries(out.upper.path()), ["hi"]);
    // Touched without a change (copied up): still no entry.
    let (out, _) = run_ok(
        &env,
        "touch /etc/ssl/certs/ca-certificates.crt",
        with_bundle(&env, &host),
    );
    assert!(
        entries(out.upper.path()).is_empty(),
        "{:?}",
        entries(out.upper.path())
    );
}

#[test]
fn the_bundle_can_be_regenerated_removed_and_moved() {
    let Some(env) = env() else { return };
    let host = host_bundle(&env, "host.pem", "HOST CA\n");
    let p = "/etc/ssl/certs/ca-certificates.crt";
    // update-ca-certificates' way: a new file renamed over the bundle.
    let regen = format!("echo REGENERATED > {p}.new && mv {p}.new {p} && cat {p}");
    let (out, lines) = run_ok(&env, &regen, with_bundle(&env, &host));
    assert_eq!(lines, ["REGENERATED"]);
    assert_eq!(read(&out, BUNDLE).as_deref(), Some("REGENERATED\n"));

    let (out, _) = run_ok(&env, &format!("rm {p}"), with_bundle(&env, &host));
    assert!(is_whiteout(&out.upper.path().join(BUNDLE)));

    let (out, _) = run_ok(&env, &format!("mv {p} /moved"), with_bundle(&env, &host));
    assert!(is_whiteout(&out.upper.path().join(BUNDLE)));
    assert_eq!(read(&out, "moved").as_deref(), Some(IMAGE_CA));
}

#[test]
fn copies_appends_and_mode_changes_carry_the_image_bundle_not_the_hosts() {
    let Some(env) = env() else { return };
    let host = host_bundle(&env, "host.pem", "HOST CA\n");
    let p = "/etc/ssl/certs/ca-certificates.crt";
    let script = format!("cp {p} /copy && ln {p} /linked && echo MINE >> {p}");
    let (out, _) = run_ok(&env, &script, with_bundle(&env, &host));
    assert_eq!(read(&out, "copy").as_deref(), Some(IMAGE_CA));
    assert_eq!(read(&out, BUNDLE).as_deref(), Some("IMAGE CA\nMINE\n"));
    assert_eq!(read(&out, "linked").as_deref(), Some("IMAGE CA\nMINE\n"));

    let (out, _) = run_ok(&env, &format!("chmod 600 {p}"), with_bundle(&env, &host));
    assert_eq!(read(&out, BUNDLE).as_deref(), Some(IMAGE_CA));
    let mode = fs::metadata(out.upper.path().join(BUNDLE)).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o600);
}

#[test]
fn an_image_without_a_bundle_gets_none_and_keeps_what_the_step_adds() {
    let Some(env) = env() else { return };
    let host = host_bundle(&env, "host.pem", "HOST CA\n");
    let bare = || on_layer(&env, &[], &host);
    let (out, lines) = run_ok(&env, "cat /etc/ssl/certs/ca-certificates.crt", bare());
    assert_eq!(lines, ["HOST CA"]);
    assert!(entries(out.upper.path()).is_empty());

    let (out, _) = run_ok(&env, "rm -r /etc/ssl", bare());
    assert!(
        entries(out.upper.path()).is_empty(),
        "{:?}",
        entries(out.upper.path())
    );

    let (out, _) = run_ok(&env, "mv /etc/ssl/certs/ca-certificates.crt /moved", bare());
    assert_eq!(entries(out.upper.path()), ["moved"]);
    assert_eq!(read(&out, "moved").as_deref(), Some(""));

    let script = "mkdir /etc/ssl/certs/java && echo store > /etc/ssl/certs/java/cacerts";
    let (out, _) = run_ok(&env, script, bare());
    assert_eq!(
        entries(out.upper.path()),
        [
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/java",
            "etc/ssl/certs/java/cacerts"
        ]
    );
}

#[test]
fn a_bundle_behind_a_symlink_is_merged_where_the_link_points() {
    let Some(env) = env() else { return };
    let host = host_bundle(&env, "host.pem", "HOST CA\n");
    let files = [
        (BUNDLE, "->/etc/pki/tls/bundle.pem"),
        ("etc/pki/tls/bundle.pem", IMAGE_CA),
    ];
    let (out, lines) = run_ok(
        &env,
        "cat /etc/ssl/certs/ca-certificates.crt",
        on_layer(&env, &files, &host),
    );
    assert_eq!(lines, ["IMAGE CA", "HOST CA"]);
    assert!(entries(out.upper.path()).is_empty());
}

#[test]
fn the_change_does_not_depend_on_the_host_bundle() {
    let Some(env) = env() else { return };
    let hosts = [
        host_bundle(&env, "a.pem", "HOST CA ONE\n"),
        host_bundle(&env, "b.pem", "ANOTHER HOST CA, LONGER\n"),
    ];
    let p = "/etc/ssl/certs/ca-certificates.crt";
    let script = format!("cp {p} /copy && echo MINE >> {p} && mv /copy /etc/copy");
    let digests: Vec<_> = hosts
        .iter()
        .map(|host| {
            let (out, _) = run_ok(&env, &script, with_bundle(&env, host));
            put_layer(&env.store, Some(out.upper.path()), None).digest
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    let bare: Vec<_> = hosts
        .iter()
        .map(|host| {
            let (out, _) = run_ok(&env, &format!("mv {p} /moved"), on_layer(&env, &[], host));
            put_layer(&env.store, Some(out.upper.path()), None).digest
        })
        .collect();
    assert_eq!(bare[0], bare[1]);
}

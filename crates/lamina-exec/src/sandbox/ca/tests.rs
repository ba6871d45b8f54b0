use super::*;

const IMAGE: &str = "IMAGE CA\n";
const HOST: &str = "HOST CA\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    run: PathBuf,
    image: PathBuf,
    upper: PathBuf,
    host: PathBuf,
}

/// An image layer (with or without its own bundle), an empty upper and a host bundle.
fn fixture(with_bundle: bool) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n);
    for d in ["run", "image/etc", "upper"] {
        fs::create_dir_all(p(d)).unwrap();
    }
    if with_bundle {
        fs::create_dir_all(p("image/etc/ssl/certs")).unwrap();
        fs::write(p("image/etc/ssl/certs/ca-certificates.crt"), IMAGE).unwrap();
    }
    fs::write(p("host.pem"), HOST).unwrap();
    Fixture {
        run: p("run"),
        image: p("image"),
        upper: p("upper"),
        host: p("host.pem"),
        _tmp: tmp,
    }
}

impl Fixture {
    fn prepare(&self) -> Trust {
        prepare(&self.run, std::slice::from_ref(&self.image), &self.host)
            .unwrap()
            .unwrap()
    }

    fn restore(&self, trust: &Trust) {
        trust
            .restore(&self.upper, std::slice::from_ref(&self.image))
            .unwrap();
    }

    /// Writes `content` at `rel` in the upper directory, as a step's change.
    fn change(&self, rel: &str, content: &str) {
        let path = self.upper.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.upper.join(rel)).ok()
    }
}

const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

#[test]
fn the_trust_lower_holds_the_image_bundle_then_the_hosts() {
    let f = fixture(true);
    let trust = f.prepare();
    let lower = trust.lower().unwrap();
    assert_eq!(
        fs::read_to_string(lower.join(BUNDLE)).unwrap(),
        "IMAGE CA\nHOST CA\n"
    );
    assert_eq!(
        fs::read_to_string(f.run.join("trust.pem")).unwrap(),
        "IMAGE CA\nHOST CA\n"
    );
    assert!(trust.env.contains(&format!("SSL_CERT_FILE={ENV_BUNDLE}")));
    let none = fixture(false);
    let trust = none.prepare();
    assert_eq!(
        fs::read_to_string(trust.lower().unwrap().join(BUNDLE)).unwrap(),
        HOST
    );
    let missing = prepare(&f.run, &[], &f.image.join("no-such-bundle")).unwrap();
    assert!(missing.is_none());
}

#[test]
fn an_untouched_copy_up_is_dropped_and_copies_get_the_image_bundle() {
    let f = fixture(true);
    let trust = f.prepare();
    f.change(BUNDLE, "IMAGE CA\nHOST CA\n");
    f.change("copy.pem", "IMAGE CA\nHOST CA\n");
    f.change("combined.pem", "IMAGE CA\nHOST CA\nMINE\n");
    f.change("unrelated", "HOST CA\n");
    f.restore(&trust);
    assert_eq!(f.read(BUNDLE), None);
    assert_eq!(f.read("copy.pem").as_deref(), Some(IMAGE));
    assert_eq!(f.read("combined.pem").as_deref(), Some("IMAGE CA\nMINE\n"));
    assert_eq!(f.read("unrelated").as_deref(), Some(HOST));
    // The directories on the way are the image's own, unchanged: nothing left of them.
    assert!(!f.upper.join("etc").exists());
}

#[test]
fn a_rewritten_or_appended_bundle_keeps_what_the_step_wrote() {
    let f = fixture(true);
    let trust = f.prepare();
    f.change(BUNDLE, "REGENERATED\n");
    f.restore(&trust);
    assert_eq!(f.read(BUNDLE).as_deref(), Some("REGENERATED\n"));

    let f = fixture(true);
    let trust = f.prepare();
    f.change(BUNDLE, "IMAGE CA\nHOST CA\nEXTRA\n");
    f.restore(&trust);
    assert_eq!(f.read(BUNDLE).as_deref(), Some("IMAGE CA\nEXTRA\n"));
}

#[test]
fn a_chmod_of_the_bundle_keeps_the_mode_with_the_image_content() {
    let f = fixture(true);
    let trust = f.prepare();
    f.change(BUNDLE, "IMAGE CA\nHOST CA\n");
    let path = f.upper.join(BUNDLE);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    f.restore(&trust);
    assert_eq!(f.read(BUNDLE).as_deref(), Some(IMAGE));
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn without_an_image_bundle_copies_are_emptied_and_dirs_of_the_trust_lower_go() {
    let f = fixture(false);
    let trust = f.prepare();
    f.change(BUNDLE, HOST);
    f.change("moved.pem", HOST);
    f.restore(&trust);
    assert_eq!(f.read(BUNDLE), None);
    assert_eq!(f.read("moved.pem").as_deref(), Some(""));
    assert!(!f.upper.join("etc/ssl").exists());

    // A file the step put next to it keeps its directories.
    let f = fixture(false);
    let trust = f.prepare();
    f.change("etc/ssl/certs/java/cacerts", "keystore");
    f.restore(&trust);
    assert_eq!(
        f.read("etc/ssl/certs/java/cacerts").as_deref(),
        Some("keystore")
    );
}

#[test]
fn a_non_file_at_the_bundle_path_gets_no_system_bundle() {
    let f = fixture(false);
    fs::create_dir_all(f.image.join(BUNDLE)).unwrap();
    let trust = f.prepare();
    assert!(trust.lower().is_none());
    // The environment bundle is still there.
    assert_eq!(fs::read_to_string(f.run.join("trust.pem")).unwrap(), HOST);
}

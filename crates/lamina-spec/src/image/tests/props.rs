//! Whatever text a step accepts, the rendered Dockerfile reads back as the same definition.

use proptest::prelude::*;

use super::*;

/// Text biased towards what breaks Dockerfile lines: quotes, escapes, line breaks, JSON,
/// heredoc markers, variables, leading dashes and blanks.
fn awkward() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "b c", " ", "\t", "\n", "\r", "\\", "`", "'", "\"", "$", "${X}", "[", "]", "[\"x\"]",
        "<<EOF", "<<-E", "#", "--", "-", "=", "é", "\u{b}", "\u{0}", ":", "/", "*", "?", "&&",
    ]);
    prop::collection::vec(pieces, 0..8).prop_map(|p| p.concat())
}

/// Fails the property if `built` is an image whose text does not read back the same.
fn check(built: Result<Image>) -> std::result::Result<(), TestCaseError> {
    if let Ok(image) = built {
        let text = image.dockerfile();
        let back = Dockerfile::parse(&text);
        prop_assert!(back.is_ok(), "{text:?} does not parse: {back:?}");
        prop_assert_eq!(&back.unwrap(), image.definition(), "text: {:?}", text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn accepted_text_round_trips(s in awkward(), t in awkward()) {
        let start = || Image::scratch().unwrap();
        check(start().run_commands([s.as_str()]))?;
        check(start().run_commands([RunCommand::from([s.as_str(), t.as_str()])]))?;
        check(start().env([(s.as_str(), t.as_str())]))?;
        check(start().env([("K", s.as_str())]))?;
        check(start().label([("k", s.as_str()), (t.as_str(), "v")]))?;
        check(start().workdir(&s))?;
        check(start().user(&s))?;
        check(start().entrypoint([s.as_str(), t.as_str()]))?;
        check(start().cmd([s.as_str()]))?;
        check(start().pip_install([s.as_str(), t.as_str()]))?;
        let options = PipOptions {
            index_url: Some(s.clone()),
            extra_options: t.clone(),
            ..PipOptions::default()
        };
        check(start().pip_install_with(["x"], &options))?;
        check(start().apt_install([s.as_str()]))?;
        check(start().expose([s.as_str()]))?;
        check(Image::base(&s))?;
        check(start().dockerfile_commands([s.as_str(), t.as_str()], None))?;
    }
}

//! Fuzzes the Dockerfile parser: any text must parse or fail cleanly (no panic), and every
//! Dockerfile that parses must come back unchanged from its rendering.
#![no_main]

use lamina_spec::Dockerfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dockerfile) = Dockerfile::parse(text) else {
        return;
    };
    let rendered = dockerfile.render();
    match Dockerfile::parse(&rendered) {
        Ok(again) => assert_eq!(again, dockerfile, "render gave:\n{rendered}"),
        Err(err) => {
            panic!("the rendering of a parsed Dockerfile does not parse: {err}\n{rendered}")
        }
    }
    // Expansion may fail on bad references but must not panic.
    let _ = dockerfile.expand(&Default::default());
});

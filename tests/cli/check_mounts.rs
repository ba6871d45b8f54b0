//! `lamina check` warns about every `RUN --mount=` value `build` would refuse, naming the
//! line and the problem, and passes good ones; `--secret`, `--ssh` and `--build-context`
//! tell it what the build will be given.

use crate::support::{lamina, write_tree};

const BAD: &str = "\
FROM scratch AS base
RUN --mount=type=nfs,target=/x true
RUN --mount=type=cache,target=/c,sharing=sometimes true
RUN --mount=type=tmpfs,target=/t,size=lots true
RUN --mount=type=cache,target=/c,mode=999 true
RUN --mount=type=cache,target=/c,uid=alice true
RUN --mount=type=bind,from=later,target=/m true
RUN --mount=type=bind,from=Not/A:Ref!,target=/m true
RUN --mount=type=bind,target=/c,ro,rw true
RUN --mount=type=bind,source=missing.txt,target=/m true
RUN --mount=type=ssh true
RUN --mount=type=secret,id=tok,required=true true
RUN --mount=type=cache true
FROM base AS later
";

const GOOD: &str = "\
FROM scratch AS base
FROM scratch
RUN --mount=type=bind,from=base,target=/b --mount=type=bind,source=app.txt,target=/a true
RUN --mount=type=cache,target=/c,id=pip,sharing=locked,mode=0755,uid=1000,gid=1000 true
RUN --mount=type=tmpfs,target=/t,size=64m --mount=type=secret,id=opt true
RUN --mount=type=bind,from=busybox:1.36,source=/bin,target=/tools true
WORKDIR /src
RUN --mount=target=. --mount=type=cache,target=cache/ --mount=ro true
";

/// The warnings `check` prints for the Dockerfile in `dir` with `args`; it passes.
fn warnings(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["check", "Dockerfile"];
    all.extend_from_slice(args);
    let output = lamina(dir, &all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn check_names_the_line_and_problem_of_each_bad_mount() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("Dockerfile", BAD), ("secret.txt", "s3cret\n")],
    );
    let found = warnings(dir.path(), &[]);
    let expected = [
        (2, "unknown type `nfs`"),
        (
            3,
            "sharing `sometimes` is not one of shared, locked, private",
        ),
        (4, "size `lots` must be bytes or a number"),
        (5, "`mode=999` must be an octal mode"),
        (6, "`uid=alice` must be a number"),
        (7, "`from=later` names this stage or a later one"),
        (8, "`from=Not/A:Ref!` names no earlier stage and no image"),
        (9, "`readonly` and `rw` contradict each other"),
        (10, "source `missing.txt` in the build context"),
        (11, "no ssh agent `default` was given"),
        (12, "secret `tok` was not provided"),
        // No target, and the working directory of a scratch stage is `/`.
        (13, "the target is `/`"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (warning, (line, problem)) in found.iter().zip(expected) {
        assert!(
            warning.starts_with(&format!("warning: line {line}: RUN would fail"))
                && warning.contains(problem),
            "line {line} should say `{problem}`: {warning}"
        );
    }

    // Given the secret, an agent and a context named `later`, those three lines pass.
    let found = warnings(
        dir.path(),
        &[
            "--secret",
            "id=tok,src=secret.txt",
            "--ssh",
            "default=/nonexistent/agent.sock",
            "--build-context",
            "later=.",
        ],
    );
    assert_eq!(found.len(), expected.len() - 3, "{found:#?}");
    assert!(
        !found.iter().any(|w| w.contains("ssh agent")
            || w.contains("secret `tok`")
            || w.contains("from=later")),
        "{found:#?}"
    );
}

#[test]
fn check_passes_good_mounts_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("Dockerfile", GOOD), ("app.txt", "app\n")]);
    assert_eq!(warnings(dir.path(), &[]), Vec::<String>::new());
}

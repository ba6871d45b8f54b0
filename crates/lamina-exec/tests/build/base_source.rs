//! The executor's base seam: an image the store lacks comes from the `BaseSource` the caller
//! gives (here one that writes an image from a directory tree; no registry anywhere), before
//! any step runs, and is named in the store so that the next build asks for nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lamina_exec::{BaseSource, BuildOptions, ExecConfig, ExecError, Executor, SeamFuture};
use lamina_image::StoredImage;
use lamina_image::layer_store::{LayerSource, store_layer};
use lamina_layer::{LayerOptions, LayerWriter};
use lamina_store::{Compression, Store};

use super::env::Env;

/// Serves every reference as one image: `tree` as its layer, `FROM_SOURCE=yes` in its env.
/// References listed in `refuse` fail as a registry would.
#[derive(Debug)]
struct TreeBases {
    tree: PathBuf,
    refuse: Vec<String>,
    asked: Mutex<Vec<String>>,
}

impl BaseSource for TreeBases {
    fn fetch(&self, store: Arc<Store>, reference: String) -> SeamFuture<StoredImage> {
        self.asked.lock().unwrap().push(reference.clone());
        let tree = self.tree.clone();
        let refused = self.refuse.contains(&reference);
        Box::pin(async move {
            if refused {
                return Err(lamina_image::ImageError::RemoteNotFound {
                    registry: "example.invalid".into(),
                    reference,
                    what: "manifest".into(),
                });
            }
            // Writing a layer is blocking work: off the async threads, as a real source does.
            tokio::task::spawn_blocking(move || {
                let options = LayerOptions::default()
                    .compression(Compression::Zstd)
                    .mtime_clamp(Some(0));
                let layer = store_layer(
                    &store,
                    &LayerWriter::new(options),
                    LayerSource::Tree(&tree),
                    None,
                )?;
                let config = lamina_image::documents::parse_config(
                    &reference,
                    br#"{"architecture":"amd64","os":"linux",
                        "config":{"Env":["FROM_SOURCE=yes"],"Cmd":["sh"]},
                        "rootfs":{"type":"layers","diff_ids":[]}}"#,
                )?;
                let image = StoredImage::commit(&store, &config, &[layer], Compression::Zstd)?;
                image.tag(&store, &reference, false)?;
                Ok(image)
            })
            .await
            .expect("the base writer does not panic")
        })
    }
}

fn executor_with(env: &Env, bases: &Arc<TreeBases>) -> Executor {
    let mut config = ExecConfig::new(env.root.join("work"));
    config.bases = Some(bases.clone());
    Executor::new(env.store.clone(), config).unwrap()
}

fn asked(bases: &TreeBases) -> Vec<String> {
    bases.asked.lock().unwrap().clone()
}

#[test]
fn a_base_the_store_lacks_comes_from_the_executors_base_source() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("app.txt", "app")]);
    let bases = Arc::new(TreeBases {
        tree: ctx.join("rootfs"),
        refuse: vec!["example.invalid/seam/gone:1".into()],
        asked: Mutex::default(),
    });
    let exec = executor_with(&env, &bases);
    // The reference is asked for after build-argument substitution, in its full form.
    let text = "ARG TAG=0\nFROM example.invalid/seam/base:$TAG\nCOPY app.txt /app.txt\n\
                ENV APP=$FROM_SOURCE\n";
    let options = BuildOptions {
        build_args: [("TAG".to_owned(), "1".to_owned())].into(),
        ..BuildOptions::default()
    };
    let first = exec
        .build_blocking(&env.image(&ctx, text), &options)
        .unwrap();
    assert_eq!(asked(&bases), ["example.invalid/seam/base:1"]);
    assert_eq!(env.read(&first, "/app.txt").as_deref(), Some("app"));
    assert!(
        env.rootfs(&first).path().join("bin/busybox").is_file(),
        "the base's layer"
    );
    let env_vars = env.config(&first)["config"]["Env"].clone();
    assert!(
        env_vars
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("APP=yes")),
        "the base's ENV reached the steps: {env_vars}"
    );

    // Named in the store: another executor's build asks for nothing and hits every step.
    let again = executor_with(&env, &bases)
        .build_blocking(&env.image(&ctx, text), &options)
        .unwrap();
    assert_eq!(asked(&bases).len(), 1, "{:?}", asked(&bases));
    assert_eq!(again.digest, first.digest);
    assert!(again.steps.iter().all(|s| s.cached));

    // `COPY --from` an image comes the same way, from async code too.
    let copy_from =
        "FROM scratch\nCOPY --from=example.invalid/seam/tools:2 /bin/busybox /busybox\n";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let image = env.image(&ctx, copy_from);
    let tools = runtime
        .block_on(exec.build(&image, BuildOptions::default()))
        .unwrap();
    assert_eq!(asked(&bases)[1], "example.invalid/seam/tools:2");
    assert!(env.rootfs(&tools).path().join("busybox").is_file());

    // The source's failure is the build's, naming the image, before any step ran.
    let gone = "FROM example.invalid/seam/gone:1\nCOPY app.txt /\n";
    let err = exec
        .build_blocking(&env.image(&ctx, gone), &BuildOptions::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ExecError::BaseUnavailable { reference, .. }
            if reference == "example.invalid/seam/gone:1")
            && text.contains("manifest of example.invalid/seam/gone:1 not found"),
        "{text}"
    );

    // Without a base source, the missing image is named and nothing is fetched.
    let bare = env.executor();
    let other = "FROM example.invalid/seam/other:1\n";
    let err = bare
        .build_blocking(&env.image(&ctx, other), &BuildOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("no base source"), "{err}");
    assert_eq!(asked(&bases).len(), 3);
}

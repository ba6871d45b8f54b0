//! `NativeImage`: a `lamina_spec::Image`, immutable; each step returns a new one.
//!
//! Arguments arrive checked for type by the Python half (`lamina/_image.py`); values the
//! builder refuses come back as `ValueError` with the builder's message.

use std::path::PathBuf;

use lamina::spec::{Image, PipOptions, RunCommand};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::errors::invalid;

/// The Python series `debian_slim` supports, oldest first.
#[pyfunction]
pub(crate) fn supported_python_series() -> Vec<&'static str> {
    lamina::spec::python::supported_series()
}

/// A container image definition (the Rust builder).
#[pyclass(frozen, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct NativeImage {
    pub(crate) inner: Image,
}

fn wrap(result: lamina::spec::Result<Image>) -> PyResult<NativeImage> {
    result.map(|inner| NativeImage { inner }).map_err(invalid)
}

fn pip_options(
    find_links: Vec<String>,
    index_url: Option<String>,
    extra_index_urls: Vec<String>,
    pre: bool,
    extra_options: String,
) -> PipOptions {
    PipOptions {
        find_links,
        index_url,
        extra_index_urls,
        pre,
        extra_options,
    }
}

#[pymethods]
impl NativeImage {
    #[staticmethod]
    fn base(reference: &str) -> PyResult<NativeImage> {
        wrap(Image::base(reference))
    }

    #[staticmethod]
    fn debian_slim(python_version: &str) -> PyResult<NativeImage> {
        wrap(Image::debian_slim(python_version))
    }

    #[staticmethod]
    fn from_dockerfile(path: PathBuf) -> PyResult<NativeImage> {
        wrap(Image::from_dockerfile(path))
    }

    fn dockerfile(&self) -> String {
        self.inner.dockerfile()
    }

    #[allow(clippy::too_many_arguments)]
    fn pip_install(
        &self,
        packages: Vec<String>,
        find_links: Vec<String>,
        index_url: Option<String>,
        extra_index_urls: Vec<String>,
        pre: bool,
        extra_options: String,
    ) -> PyResult<NativeImage> {
        let options = pip_options(find_links, index_url, extra_index_urls, pre, extra_options);
        wrap(self.inner.clone().pip_install_with(packages, &options))
    }

    #[allow(clippy::too_many_arguments)]
    fn pip_install_from_requirements(
        &self,
        path: PathBuf,
        find_links: Vec<String>,
        index_url: Option<String>,
        extra_index_urls: Vec<String>,
        pre: bool,
        extra_options: String,
    ) -> PyResult<NativeImage> {
        let options = pip_options(find_links, index_url, extra_index_urls, pre, extra_options);
        wrap(
            self.inner
                .clone()
                .pip_install_from_requirements(path, &options),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn pip_install_from_pyproject(
        &self,
        path: PathBuf,
        optional_dependencies: Vec<String>,
        find_links: Vec<String>,
        index_url: Option<String>,
        extra_index_urls: Vec<String>,
        pre: bool,
        extra_options: String,
    ) -> PyResult<NativeImage> {
        let options = pip_options(find_links, index_url, extra_index_urls, pre, extra_options);
        wrap(
            self.inner
                .clone()
                .pip_install_from_pyproject(path, optional_dependencies, &options),
        )
    }

    fn add_local_file(&self, local_path: PathBuf, remote_path: &str) -> PyResult<NativeImage> {
        wrap(self.inner.clone().add_local_file(local_path, remote_path))
    }

    fn add_local_dir(&self, local_path: PathBuf, remote_path: &str) -> PyResult<NativeImage> {
        wrap(self.inner.clone().add_local_dir(local_path, remote_path))
    }

    /// Each command a string (a shell line) or a list of strings (words).
    fn run_commands(&self, commands: Vec<Bound<'_, PyAny>>) -> PyResult<NativeImage> {
        let mut parsed = Vec::with_capacity(commands.len());
        for command in commands {
            if let Ok(line) = command.extract::<String>() {
                parsed.push(RunCommand::Shell(line));
            } else if let Ok(words) = command.extract::<Vec<String>>() {
                parsed.push(RunCommand::Words(words));
            } else {
                return Err(PyTypeError::new_err(
                    "run_commands() argument 'commands' items must be str or list[str]",
                ));
            }
        }
        wrap(self.inner.clone().run_commands(parsed))
    }

    fn env(&self, env_vars: Vec<(String, String)>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().env(env_vars))
    }

    fn workdir(&self, path: &str) -> PyResult<NativeImage> {
        wrap(self.inner.clone().workdir(path))
    }

    fn entrypoint(&self, entrypoint_commands: Vec<String>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().entrypoint(entrypoint_commands))
    }

    fn cmd(&self, cmd: Vec<String>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().cmd(cmd))
    }

    #[pyo3(signature = (dockerfile_commands, context_dir=None))]
    fn dockerfile_commands(
        &self,
        dockerfile_commands: Vec<String>,
        context_dir: Option<PathBuf>,
    ) -> PyResult<NativeImage> {
        wrap(
            self.inner
                .clone()
                .dockerfile_commands(dockerfile_commands, context_dir.as_deref()),
        )
    }

    fn apt_install(&self, packages: Vec<String>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().apt_install(packages))
    }

    fn user(&self, user: &str) -> PyResult<NativeImage> {
        wrap(self.inner.clone().user(user))
    }

    fn label(&self, labels: Vec<(String, String)>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().label(labels))
    }

    fn expose(&self, ports: Vec<String>) -> PyResult<NativeImage> {
        wrap(self.inner.clone().expose(ports))
    }

    fn __eq__(&self, other: &NativeImage) -> bool {
        self.inner == other.inner
    }
}

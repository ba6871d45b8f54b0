//! `lamina._native`: the Rust half of the `lamina` Python package.
//!
//! The Python half (`python/lamina`) holds Daytona's exact signatures, argument checks and
//! messages; this module holds the builder (`NativeImage`, a `lamina_spec::Image`)
//! and the engine (`NativeEngine`, a `lamina::Engine` with a tokio runtime), and
//! turns Lamina's errors into the package's exception classes.

use pyo3::prelude::*;

/// The allocator of the module's Rust code, as the CLI's (docs/ARCHITECTURE.md); Python's
/// own objects keep Python's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod engine;
mod errors;
mod image;
mod progress;
mod results;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<image::NativeImage>()?;
    module.add_class::<engine::NativeEngine>()?;
    module.add_class::<results::BuildResult>()?;
    module.add_class::<results::PushResult>()?;
    module.add_class::<results::ExportResult>()?;
    module.add_class::<results::ImageInfo>()?;
    module.add_class::<results::GcResult>()?;
    module.add_class::<progress::TransferEvent>()?;
    module.add_function(wrap_pyfunction!(image::supported_python_series, module)?)?;
    errors::register(module)?;
    Ok(())
}

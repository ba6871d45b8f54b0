//! Lamina's errors as Python exceptions: a `LaminaError` hierarchy carrying the text the
//! CLI prints, and `ValueError` for a builder argument Lamina refuses.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(_native, LaminaError, PyException, "Any failure of Lamina.");
create_exception!(
    _native,
    DefinitionError,
    LaminaError,
    "The definition cannot be built as written (a Dockerfile, a local input, a target stage it lacks)."
);
create_exception!(
    _native,
    BuildError,
    LaminaError,
    "A build failed (a RUN step's exit status, a base that cannot be resolved)."
);
create_exception!(
    _native,
    StoreError,
    LaminaError,
    "The store failed (opening, reading, writing, locking)."
);
create_exception!(
    _native,
    ImageTransferError,
    LaminaError,
    "An image could not move in or out of the store (archives, registries)."
);
create_exception!(
    _native,
    ImageNotFoundError,
    LaminaError,
    "No image has this name in the store."
);

pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("LaminaError", py.get_type::<LaminaError>())?;
    module.add("DefinitionError", py.get_type::<DefinitionError>())?;
    module.add("BuildError", py.get_type::<BuildError>())?;
    module.add("StoreError", py.get_type::<StoreError>())?;
    module.add("ImageTransferError", py.get_type::<ImageTransferError>())?;
    module.add("ImageNotFoundError", py.get_type::<ImageNotFoundError>())?;
    Ok(())
}

/// The error and its causes joined by `: `, a cause left out when an outer message already
/// quotes it: the text `lamina` prints after `error: `.
pub(crate) fn message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let part = current.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

/// A builder argument Lamina refuses: `ValueError` with Lamina's one-line message.
pub(crate) fn invalid(error: lamina::spec::SpecError) -> PyErr {
    PyValueError::new_err(message(&error))
}

/// An engine failure as the matching `LaminaError` subclass.
pub(crate) fn lamina(error: lamina::Error) -> PyErr {
    let text = message(&error);
    match error {
        lamina::Error::Spec(_) => DefinitionError::new_err(text),
        lamina::Error::Exec(
            lamina::exec::ExecError::Spec(_) | lamina::exec::ExecError::UnknownTargetStage { .. },
        ) => DefinitionError::new_err(text),
        lamina::Error::Exec(_) => BuildError::new_err(text),
        lamina::Error::Store(_) | lamina::Error::Layer(_) | lamina::Error::BlobMissing { .. } => {
            StoreError::new_err(text)
        }
        lamina::Error::Export(lamina::export::ExportError::ImageNotFound { .. })
        | lamina::Error::ImageNotFound { .. } => ImageNotFoundError::new_err(text),
        lamina::Error::Export(_) => ImageTransferError::new_err(text),
        _ => LaminaError::new_err(text),
    }
}

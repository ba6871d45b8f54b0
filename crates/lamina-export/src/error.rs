//! The one error type of `lamina-export`: lamina-image's
//! [`ImageError`](lamina_image::ImageError), under the name this crate's API has always used
//! (the executor and the facade carry the same type).

pub use lamina_image::ImageError as ExportError;

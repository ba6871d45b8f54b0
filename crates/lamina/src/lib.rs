//! `lamina`: the facade over Lamina's crates, and the `lamina` command-line tool.
//!
//! Today the facade loads and checks image definitions ([`load_definition`]) and stores
//! layers ([`store_layer`]); the `Engine` type that builds images arrives with the executor.
//! Re-exports give embedders one dependency: [`spec`] is `lamina-spec`, [`store`] is
//! `lamina-store`, [`layer`] is `lamina-layer`.

pub use lamina_layer as layer;
pub use lamina_spec as spec;
pub use lamina_store as store;

mod definition;
mod error;
mod layers;

pub use definition::{DefinitionKind, load_definition};
pub use error::Error;
pub use layers::{LayerSource, store_layer};

//! `lamina`: the facade over Lamina's crates, and the `lamina` command-line tool.
//!
//! Today the facade loads and checks image definitions ([`load_definition`]); the `Engine`
//! type that builds them arrives with the executor. Re-exports give embedders one dependency:
//! [`spec`] is `lamina-spec`.

pub use lamina_spec as spec;

mod definition;

pub use definition::{DefinitionKind, load_definition};

//! `lamina-spec`: the declarative definition of a container image.
//!
//! The main type is [`Image`]: a builder with the surface of the Daytona and Modal SDKs
//! (`Image::debian_slim("3.12")?.pip_install(["numpy"])?...`). An image is a [`Dockerfile`]
//! (the parsed instruction model, shared by the builder, the Dockerfile parser and the TOML
//! definition format) plus a [`Context`] saying where its local inputs live. Its identity is
//! the definition digest: blake3 over a canonical encoding of the instructions and the
//! content of every local input, independent of where the inputs sit on disk.
//!
//! This crate does no I/O beyond reading the inputs a definition names.
#![doc = include_str!("../README.md")]

pub mod context;
pub mod digest;
pub mod error;
pub mod expand;
pub mod image;
pub mod inputs;
pub mod instruction;
pub mod parse;
pub mod python;
pub mod quote;
pub mod render;
pub mod toml_def;

pub use context::{Context, StepRef};
pub use digest::DefinitionDigest;
pub use error::{Result, SpecError};
pub use image::{Image, Origin};
pub use image::{LocalDirOptions, PipOptions, RunCommand};
pub use instruction::{
    ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction, Run, Stage,
};

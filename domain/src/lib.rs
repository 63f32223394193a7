//! The values insa-iiot is about, each parsed once where it enters and typed from there on. Pure:
//! no I/O, no HTTP, no database connection; the API, the actors and the storage all speak it.
//!
//! - [`problems`]: [`FieldProblem`], what is wrong with one field of something a client sent
//! - [`text`]: text the databases can store (no NUL) and the one length check of named fields

pub mod problems;
pub mod text;

pub use problems::FieldProblem;

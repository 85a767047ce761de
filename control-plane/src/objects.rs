//! The object store of raw uploads and packaged media: the shared `objects` crate, which the
//! origin also reads.

pub use ::objects::{ObjectError, Objects};

//! The BOINC side: the application API the client speaks through, the
//! slot's `init_data.xml`, the exit codes the client understands, and what
//! wakes the wrapper when the client has news.
mod api;
pub mod exit_code;
pub mod host_limits;
pub mod init_data;
pub mod wakeup;

pub use api::*;

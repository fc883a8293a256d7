//! The slot directory, which the job shares with the wrapper and may fill
//! with anything: reading its files safely, the client's links in it, the
//! job's control files, its disk usage, the wrapper's journal, and what is
//! handed back to the client at the end.
pub mod control_files;
pub mod files;
pub mod handover;
pub mod host_path;
pub mod io;
pub mod journal;
pub mod usage;

//! Supervising a running container until the task ends: the state machine
//! decides (`machine`), the loop gathers events and performs the actions.
pub mod client;
pub mod machine;
pub mod network;
pub mod schedule;
pub mod suspend;

mod actions;
mod run_loop;

//! The container as this host sees it: its processes, its cgroup's CPU
//! time and memory, and the background priority it runs at.
pub mod background;
pub mod process_tree;
pub mod usage;

//! The exit codes the wrapper reports for its own reasons, beside the job's
//! own code. The numbers are BOINC's (`lib/error_numbers.h`), so the client
//! and the project's validator read them as BOINC's own failures.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapperExit {
    /// The job wrote more into the slot than the workunit's disk bound.
    DiskLimitExceeded,
    /// The job was killed for using more memory than its bound.
    MemLimitExceeded,
    /// The job stopped touching its heartbeat file: taken as hung
    /// (EXIT_CHILD_FAILED).
    JobHung,
    /// The task could not be set up (bad job.toml, missing Dockerfile,
    /// failed build, an engine that fails for good).
    InitFailure,
}

impl WrapperExit {
    pub const fn code(self) -> i32 {
        match self {
            WrapperExit::DiskLimitExceeded => 196,
            WrapperExit::MemLimitExceeded => 198,
            WrapperExit::JobHung => 195,
            WrapperExit::InitFailure => 206,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_boincs() {
        assert_eq!(WrapperExit::DiskLimitExceeded.code(), 196);
        assert_eq!(WrapperExit::MemLimitExceeded.code(), 198);
        assert_eq!(WrapperExit::JobHung.code(), 195);
        assert_eq!(WrapperExit::InitFailure.code(), 206);
    }
}

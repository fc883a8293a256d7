//! What /proc says of a process, for checks the engine cannot make (a job
//! whose processes the wrapper stopped with SIGSTOP still looks "running").

/// The state letter of /proc/PID/stat ('R', 'S', 'T' for stopped, ...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Suspended as the wrapper leaves a job: the engine's `paused`, or the
/// container's init stopped by a signal. `status_and_pid` is inspect's
/// `{{.State.Status}} {{.State.Pid}}`.
pub fn is_suspended(status_and_pid: &str) -> bool {
    let mut fields = status_and_pid.split_whitespace();
    let status = fields.next().unwrap_or_default();
    let pid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    status == "paused" || (pid > 0 && process_state(pid) == Some('T'))
}

/// How many times thread `tid` of process `pid` went to sleep of its own
/// accord (voluntary context switches): its wake-ups.
pub fn voluntary_switches(pid: u32, tid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

//! The task's end: the job's exit and every other reason the machine ends
//! it for, and the client's abort.
use crate::outcome::Outcome;
use crate::supervise::machine::{Ending, Kill};
use crate::supervise::{Next, Supervision};

impl Supervision<'_> {
    /// Says why the job ends, brings the container down as `kill` says and
    /// finishes with `code`.
    pub(super) fn end(&mut self, code: i32, why: &Ending, kill: Kill) -> Next {
        let end = self.end_of_task();
        end.say_why(code, why);
        end.bring_down(kill);
        Next::End(end.finish(code, why, true, self.accounting.cpu_time()))
    }

    pub(super) fn abort(&mut self) -> Next {
        log::info!("the client aborted the task: removing the container");
        let (engine, container) = (self.task.engine, &self.task.ctx.container);
        // `podman rm -f` stops with SIGTERM and a 10 s grace; an abort needs no grace.
        engine.kill(container);
        if let Err(err) = engine.remove(container) {
            log::error!("{err}");
        }
        Next::End(Outcome::Aborted)
    }
}

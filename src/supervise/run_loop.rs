//! The loop: it sleeps until something happens, turns it into an event for
//! the machine and performs the actions the machine returns. It decides
//! nothing itself.
use std::collections::VecDeque;
use std::time::Instant;

use super::machine::{self, Event};
use super::{Next, Supervision};
use crate::outcome::{Outcome, TaskError};

impl Supervision<'_> {
    /// Events until the task ends.
    pub(super) fn run(mut self) -> Result<Outcome, TaskError> {
        loop {
            let mut events = VecDeque::from([self.next_event()?]);
            let due = self.schedule.take_due(Instant::now());
            events.extend(due.into_iter().map(Event::Due));
            while let Some(event) = events.pop_front() {
                for action in self.machine.on_at(Instant::now(), &event) {
                    match self.perform(&action)? {
                        Next::Continue => {}
                        Next::Then(more) => events.extend(more),
                        Next::End(outcome) => return Ok(outcome),
                    }
                }
            }
        }
    }

    /// The container's exit, else a signal, else the client's status:
    /// sleeping until one of them has news or periodic work falls due.
    fn next_event(&mut self) -> Result<Event, TaskError> {
        let client = self.task.client;
        let wait = self
            .schedule
            .wait_from(Instant::now(), client.longest_wait());
        if !self.exit.wait_exited(wait, client.wakeup()) {
            let status = client.poll();
            return Ok(if client.terminated() {
                Event::Terminated
            } else {
                Event::Client(status)
            });
        }
        // Read the cgroup at once, before the engine removes it (Docker does
        // within moments of the exit): the CPU time since the last periodic
        // reading, and the OOM counter.
        self.accounting.update_at_exit();
        let cgroup_oom = self.accounting.oom_killed();
        let exit = match self.exit.exit() {
            Ok(exit) => exit,
            Err(err) => match err.unavailable() {
                Some(why) => return Ok(Event::EngineLost { why: why.into() }),
                None => return Err(err.into()),
            },
        };
        let engine_oom = match exit.oom_killed {
            Some(oom_killed) => oom_killed,
            // The exit code is known: an engine that cannot say more must
            // not cost the task its result.
            None => self.asked_whether_out_of_memory(),
        };
        Ok(Event::ContainerExited {
            code: exit.code,
            oom_killed: machine::out_of_memory(exit.code, engine_oom, cgroup_oom),
        })
    }

    fn asked_whether_out_of_memory(&self) -> bool {
        let (engine, ctx) = (self.task.engine, self.task.ctx);
        match engine.inspect(&ctx.container) {
            Ok(state) => state.is_some_and(|s| s.oom_killed),
            Err(err) => {
                log::warn!("cannot ask the engine whether the job ran out of memory: {err}");
                false
            }
        }
    }
}

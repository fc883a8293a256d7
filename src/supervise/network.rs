//! Network suspension. A volunteer can forbid network use (always, or at
//! some hours); the client then sets `network_suspended` in its heartbeat.
//! A job in a container cannot be asked to honour that, so the container is
//! taken off its engine networks while the flag is set and put back on
//! exactly those networks when it clears.
//!
//! Podman 4.3 applies `network connect`/`disconnect` to a paused container
//! in its records only (the interface stays, or never appears), so the
//! networks change only while the container runs. A container kept for a
//! restart gets its networks back first: the next wrapper process does not
//! know they were taken (and engines keep a disconnect across restarts).
use std::time::{Duration, Instant};

use crate::boinc;
use crate::engine::{ContainerEngine, ContainerStatus};
use crate::supervise::suspend;

/// Wait before trying again to give networks back after a failure.
const RECONNECT_RETRY: Duration = Duration::from_secs(30);

/// What to do with the container's networks this tick.
#[derive(Debug, PartialEq)]
enum Step {
    Nothing,
    Disconnect,
    Reconnect,
}

/// The bookkeeping, free of engine calls.
#[derive(Debug)]
struct Tracker {
    /// The job has a network (job.toml `network`, true by default).
    enabled: bool,
    /// Networks we took the container off; empty while it is connected.
    detached: Vec<String>,
    /// Disconnecting is impossible or failed: the job keeps its network for
    /// the rest of this run (one warning, not one per tick).
    gave_up: bool,
    /// After a failed reconnect, no new attempt before this.
    retry_at: Option<Instant>,
}

impl Tracker {
    fn new(enabled: bool) -> Tracker {
        Tracker {
            enabled,
            detached: Vec::new(),
            gave_up: false,
            retry_at: None,
        }
    }

    fn step(&self, network_suspended: bool, running: bool, now: Instant) -> Step {
        if !self.enabled || !running {
            return Step::Nothing;
        }
        if !self.detached.is_empty() {
            // Once we gave up, networks taken before the failure go back.
            let wanted_back = !network_suspended || self.gave_up;
            let due = self.retry_at.map_or(true, |at| now >= at);
            return if wanted_back && due {
                Step::Reconnect
            } else {
                Step::Nothing
            };
        }
        if network_suspended && !self.gave_up {
            Step::Disconnect
        } else {
            Step::Nothing
        }
    }
}

/// The container's networks, following the client's `network_suspended`.
pub struct ContainerNetwork<'a> {
    engine: &'a dyn ContainerEngine,
    container: &'a str,
    tracker: Tracker,
}

impl<'a> ContainerNetwork<'a> {
    /// `job_has_network`: job.toml's `network`; false means there is nothing
    /// to take away, and nothing is ever done.
    pub fn new(
        engine: &'a dyn ContainerEngine,
        container: &'a str,
        job_has_network: bool,
    ) -> ContainerNetwork<'a> {
        if job_has_network && !library_sees_network_suspension(&boinc::library_version()) {
            log::info!(
                "BOINC API {} does not see the client's network suspension (its heartbeat tag changed in 8.2): \
                 the container keeps its network when the client suspends network use",
                boinc::library_version()
            );
        }
        ContainerNetwork {
            engine,
            container,
            tracker: Tracker::new(job_has_network),
        }
    }

    /// Called with every client status; `running`: the container runs (not
    /// paused), so network changes take effect. Errors are logged, never fatal.
    pub fn follow(&mut self, network_suspended: bool, running: bool) {
        match self
            .tracker
            .step(network_suspended, running, Instant::now())
        {
            Step::Nothing => {}
            Step::Disconnect => self.disconnect(),
            Step::Reconnect => self.reconnect(),
        }
    }

    /// Gives the networks back before the container is kept for a restart.
    /// False when it had to unpause the container
    /// for that and could not pause it again.
    pub fn restore(&mut self) -> bool {
        if self.tracker.detached.is_empty() {
            return true;
        }
        let must_unpause = !self.engine.reconnects_paused_containers()
            && self
                .engine
                .inspect(self.container)
                .ok()
                .flatten()
                .is_some_and(|s| s.status == ContainerStatus::Paused);
        if must_unpause {
            if let Err(err) = self.engine.unpause(self.container) {
                log::debug!("unpause to reconnect: {err}");
            }
        }
        self.tracker.retry_at = None;
        self.reconnect();
        !must_unpause || self.pause_again()
    }

    /// The freezer can fail while the job forks: a few attempts, backing off.
    fn pause_again(&self) -> bool {
        match suspend::pause_with_retries(self.engine, self.container, 3, &mut || false) {
            Ok(()) => true,
            Err(err) => {
                log::warn!("the container could not be paused again after reconnecting it: {err}");
                false
            }
        }
    }

    fn disconnect(&mut self) {
        let networks = match self.engine.networks(self.container) {
            Ok(networks) => networks,
            Err(err) => return self.give_up(&err.to_string()),
        };
        if networks.is_empty() {
            return self.give_up(
                "it is on no engine network (network mode host, none, slirp4netns or pasta)",
            );
        }
        for network in networks {
            match self.engine.network_disconnect(self.container, &network) {
                Ok(()) => self.tracker.detached.push(network),
                Err(err) => return self.give_up(&err.to_string()),
            }
        }
        log::info!(
            "network suspended by the client: container disconnected from {}",
            self.tracker.detached.join(", ")
        );
    }

    fn give_up(&mut self, why: &str) {
        log::warn!(
            "the client suspended the network, but the container cannot be disconnected: {why}; \
             the job keeps its network"
        );
        self.tracker.gave_up = true;
    }

    fn reconnect(&mut self) {
        // Connecting a network twice is an error on both engines: skip any
        // the container is on again (a failed query just means try them all).
        let current = self.engine.networks(self.container).unwrap_or_default();
        let mut failed = Vec::new();
        let mut last_error = None;
        let wanted = std::mem::take(&mut self.tracker.detached);
        for network in wanted.iter().filter(|n| !current.contains(n)) {
            if let Err(err) = self.engine.network_connect(self.container, network) {
                failed.push(network.clone());
                last_error = Some(err);
            }
        }
        match last_error {
            None => {
                self.tracker.retry_at = None;
                log::info!(
                    "network resumed: container reconnected to {}",
                    wanted.join(", ")
                );
            }
            Some(err) => {
                let networks = failed.join(", ");
                log::warn!("cannot reconnect the container to {networks} (retrying in {RECONNECT_RETRY:?}): {err}");
                self.tracker.detached = failed;
                self.tracker.retry_at = Some(Instant::now() + RECONNECT_RETRY);
            }
        }
    }
}

/// Libraries before 8.2 look for `<suspend_network/>` in the heartbeat,
/// while the client sends `<network_suspended/>`: they never report it.
fn library_sees_network_suspension(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (8, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_libraries_from_8_2_see_the_clients_flag() {
        assert!(!library_sees_network_suspension("7.20.5"));
        assert!(!library_sees_network_suspension("8.0.4"));
        assert!(library_sees_network_suspension("8.2.15"));
        assert!(library_sees_network_suspension("8.3.0"));
        assert!(!library_sees_network_suspension("garbage"));
    }

    fn detached(networks: &[&str]) -> Tracker {
        Tracker {
            detached: networks.iter().map(|n| n.to_string()).collect(),
            ..Tracker::new(true)
        }
    }

    #[test]
    fn disconnects_once_and_reconnects_on_resume() {
        let now = Instant::now();
        let t = Tracker::new(true);
        assert_eq!(t.step(false, true, now), Step::Nothing);
        assert_eq!(t.step(true, true, now), Step::Disconnect);
        let t = detached(&["bridge"]);
        assert_eq!(
            t.step(true, true, now),
            Step::Nothing,
            "already disconnected"
        );
        assert_eq!(t.step(false, true, now), Step::Reconnect);
    }

    #[test]
    fn a_job_without_network_is_left_alone() {
        let t = Tracker::new(false);
        assert_eq!(t.step(true, true, Instant::now()), Step::Nothing);
    }

    #[test]
    fn a_paused_container_waits_until_it_runs() {
        let now = Instant::now();
        assert_eq!(Tracker::new(true).step(true, false, now), Step::Nothing);
        assert_eq!(detached(&["podman"]).step(false, false, now), Step::Nothing);
    }

    #[test]
    fn after_giving_up_nothing_is_retried_but_taken_networks_go_back() {
        let now = Instant::now();
        let t = Tracker {
            gave_up: true,
            ..Tracker::new(true)
        };
        assert_eq!(t.step(true, true, now), Step::Nothing);
        let t = Tracker {
            gave_up: true,
            ..detached(&["a"])
        };
        assert_eq!(t.step(true, true, now), Step::Reconnect);
    }

    #[test]
    fn a_failed_reconnect_is_retried_later() {
        let now = Instant::now();
        let t = Tracker {
            retry_at: Some(now + RECONNECT_RETRY),
            ..detached(&["bridge"])
        };
        assert_eq!(t.step(false, true, now), Step::Nothing);
        assert_eq!(t.step(false, true, now + RECONNECT_RETRY), Step::Reconnect);
    }
}

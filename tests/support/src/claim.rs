//! Which tests of one test program may run at the same time.
//!
//! The integration tests share one test program (tests/suite/), whose tests
//! run on several threads at once (`--test-threads 4`). Most keep out of
//! each other's way with names, data dirs, projects and images of their own.
//! A few cannot, and say so with the claim they take for as long as they run:
//!
//! * `Claim::shared(kind)`: an ordinary test on an engine (what
//!   `on_both_engines!` takes); `Claim::no_engine()`: one without an engine.
//! * `Claim::engine_alone(kind)`: a test that looks at everything on an
//!   engine (every image, every container) and would count another test's
//!   build or container as its own leftover. No other test uses that engine
//!   meanwhile; the other engine stays busy.
//! * `Claim::machine_alone()`: a test that measures how the cores are
//!   shared and needs them to itself. No other test runs meanwhile.
//!
//! Every test of the suite takes one. Claims are locks: a test takes the
//! machine's lock, then its engine's (shared or alone), and never a second
//! claim while it holds one (std's RwLock on Linux lets a waiting "alone"
//! claim go before new shared ones, so a second shared claim could wait
//! forever). Names that only a
//! handful of tests share (the standalone container) have a `Mutex` of their
//! own, taken after the claim.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::EngineKind;

/// Held shared by every test, alone by a test that needs the cores.
static MACHINE: RwLock<()> = RwLock::new(());
/// Held shared by every test on the engine, alone by a test that looks at all of it.
static PODMAN: RwLock<()> = RwLock::new(());
static DOCKER: RwLock<()> = RwLock::new(());

/// A standalone run (no client, a plain directory) names its container
/// `boinc` on every host, as the C++ wrapper does: one such run per engine
/// at a time.
static STANDALONE_PODMAN: Mutex<()> = Mutex::new(());
static STANDALONE_DOCKER: Mutex<()> = Mutex::new(());

/// What a test needs of the others while it runs; `on_both_engines!` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Shared,
    EngineAlone,
    MachineAlone,
}

/// A test's claim, released when dropped (at the end of the test, or when it fails).
#[must_use = "the claim holds only while it lives: bind it to `_claim`"]
pub struct Claim {
    // Released in this order: the engine's lock, then the machine's.
    _engine: Option<Held>,
    _machine: Held,
}

/// One lock, held shared or alone.
struct Held {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

impl Claim {
    /// `need` for a test on `kind`'s engine.
    pub fn take(need: Need, kind: EngineKind) -> Claim {
        match need {
            Need::Shared => Claim::shared(kind),
            Need::EngineAlone => Claim::engine_alone(kind),
            Need::MachineAlone => Claim::machine_alone(),
        }
    }

    /// A test that uses no engine.
    pub fn no_engine() -> Claim {
        Claim {
            _engine: None,
            _machine: shared(&MACHINE),
        }
    }

    /// An ordinary test on `kind`'s engine.
    pub fn shared(kind: EngineKind) -> Claim {
        let machine = shared(&MACHINE);
        Claim {
            _engine: Some(shared(engine_lock(kind))),
            _machine: machine,
        }
    }

    /// A test that must be the only one on `kind`'s engine.
    pub fn engine_alone(kind: EngineKind) -> Claim {
        let machine = shared(&MACHINE);
        Claim {
            _engine: Some(alone(engine_lock(kind))),
            _machine: machine,
        }
    }

    /// A test that must be the only test running.
    pub fn machine_alone() -> Claim {
        Claim {
            _engine: None,
            _machine: alone(&MACHINE),
        }
    }
}

/// The standalone container's name on `kind`'s engine, for as long as the
/// guard lives. Take it after the test's claim.
pub fn standalone_container(kind: EngineKind) -> MutexGuard<'static, ()> {
    let lock = match kind {
        EngineKind::Podman => &STANDALONE_PODMAN,
        EngineKind::Docker => &STANDALONE_DOCKER,
    };
    // Poisoned when a test failed while holding it: the exclusion is all
    // the next one needs.
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

fn engine_lock(kind: EngineKind) -> &'static RwLock<()> {
    match kind {
        EngineKind::Podman => &PODMAN,
        EngineKind::Docker => &DOCKER,
    }
}

// A lock is poisoned when a test fails while it holds it alone; the next
// test needs only the exclusion, not the failed test's state.
fn shared(lock: &'static RwLock<()>) -> Held {
    Held {
        _shared: Some(lock.read().unwrap_or_else(|e| e.into_inner())),
        _alone: None,
    }
}

fn alone(lock: &'static RwLock<()>) -> Held {
    Held {
        _shared: None,
        _alone: Some(lock.write().unwrap_or_else(|e| e.into_inner())),
    }
}

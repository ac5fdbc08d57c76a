//! mako-sim-tests: deterministic turmoil simulations of whole validators (DESIGN.md §9).
//!
//! [`harness`] runs validators — a worker, a primary, consensus and execution each — on simulated hosts over
//! quinn on turmoil's UDP, with their stores on disk so that a restarted host finds its state, plus a load
//! client, and records what every validator delivered, committed, executed and had acknowledged.
//! [`scenario`] runs the fault scenarios of issue 7 in four phases, [`byzantine`] is the adversary of one of
//! them, [`equivocation`] a Byzantine author across a power cut, and [`invariants`] judges every item of DESIGN.md §9 over the honest validators. [`experiment`]
//! is `mako bench`'s experiment under the simulator. The binary (`src/main.rs`) sweeps scenarios over many
//! seeds, and runs experiments. Every run is a function of its seed: a failing
//! scenario prints the seed and the command that replays it (`MAKO_SEED=<seed> cargo test -p mako-sim-tests
//! --test <file>`).

pub mod byzantine;
pub mod equivocation;
pub mod experiment;
pub mod harness;
pub mod invariants;
pub mod ordering;
pub mod scenario;

//! Running a graph of instances: the scheduler, the processes, the work of
//! one instance, and the plan of a run that does not run.

/// Orphans of tasks: reparented to hotpass, stopped with their task.
pub mod orphans;
/// The plan of a run without running it (`--dry-run`).
pub mod plan;
/// One shell command in its own process group.
pub mod process;
/// The state machine that starts what is ready within `-j`.
pub mod scheduler;
/// Starting a task's shell without copying hotpass (no `fork`).
mod spawn;
/// The work of one instance: answer from the cache, or run and store.
pub mod work;

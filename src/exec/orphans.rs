//! Orphans: processes a task leaves behind outside its process group (a
//! daemon that calls `setsid`, a double fork). hotpass makes itself a child
//! subreaper, so they are reparented to it rather than to init; when their
//! task ends (and before hotpass exits) they are stopped like the task
//! itself — the stop signal to their group, SIGKILL after the stop timeout
//! — and reaped. Linux only; elsewhere these are no-ops.
//!
//! An orphan is told from hotpass's own children because it is a child of
//! the main thread (the kernel hands orphans to the subreaper's first live
//! thread), while tasks are started by worker threads; it is told to
//! belong to a task by the `HOTPASS_TASK` its environment inherited.

use std::time::{Duration, Instant};

/// Makes hotpass the reaper of its tasks' orphans.
pub fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a process flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The processes reparented to hotpass (with zombies among them).
fn orphans() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The instance an orphan's environment says it belongs to.
fn task_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"HOTPASS_TASK="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Reaps `pid` if it has exited; whether it is gone.
fn reaped(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waits only for this pid, without blocking.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    rc == pid || (rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// Stops the orphans of instance `task` (every orphan with `None`): the
/// stop signal to each one's process group, SIGKILL once `timeout` has
/// passed, and reaps them. Returns how many it stopped.
pub fn stop(task: Option<&str>, signal: i32, timeout: Duration) -> usize {
    let mut mine = Vec::new();
    for pid in orphans() {
        if reaped(pid) {
            continue; // a zombie: gone now
        }
        if task.is_none() || task_of(pid).as_deref() == task {
            mine.push(pid);
        }
    }
    if mine.is_empty() {
        return 0;
    }
    let groups: Vec<i32> = mine
        .iter()
        // SAFETY: getpgid only reads; a pid that exited meanwhile gives -1.
        .map(|p| unsafe { libc::getpgid(*p) })
        .filter(|g| *g > 1)
        .collect();
    let send = |sig: i32| {
        for g in &groups {
            // SAFETY: signals a group of processes our tasks started.
            unsafe { libc::killpg(*g, sig) };
        }
        for p in &mine {
            // SAFETY: and the orphan itself, should it have left its group.
            unsafe { libc::kill(*p, sig) };
        }
    };
    send(signal);
    let until = Instant::now() + timeout;
    while !mine.iter().all(|p| reaped(*p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !mine.iter().all(|p| reaped(*p)) {
        send(libc::SIGKILL);
        for p in &mine {
            let mut status = 0;
            // SAFETY: blocks until this SIGKILLed child is gone.
            unsafe { libc::waitpid(*p, &mut status, 0) };
        }
    }
    tracing::debug!("stopped {} orphaned processes", mine.len());
    mine.len()
}

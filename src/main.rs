//! The `hotpass` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    tune_allocator();
    hotpass::run(std::env::args_os())
}

/// glibc's allocator grows each heap by what is asked plus 128 KiB. A run
/// allocates a few megabytes across its threads in many small steps, and
/// each step of a thread's heap is an `mprotect` that also stalls the other
/// threads' page faults: on a 1,000-task no-op that was 290 calls and a
/// tenth of the time. Growing by 4 MiB at a time takes 15; the pages are
/// still only touched (and so resident) as they are used.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets a parameter, before any thread exists.
    unsafe { libc::mallopt(libc::M_TOP_PAD, 4 << 20) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

//! Spawning one shell command in its own process group, streaming its output
//! line by line, and killing the whole group on timeout, cancel or exit.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::capture::Stream;

/// Shared handle to the process group an instance is running, so the
/// scheduler can kill it while a worker thread waits on it.
#[derive(Debug, Default)]
pub struct Control {
    pgid: AtomicI32,
    cancelled: AtomicBool,
    timed_out: AtomicBool,
}

impl Control {
    /// Kills the running group (if any) with `signal`, and stops further commands.
    pub fn kill(&self, signal: i32) {
        self.cancelled.store(true, Ordering::SeqCst);
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: killpg only sends a signal; a stale group id yields ESRCH.
            unsafe { libc::killpg(pgid, signal) };
        }
    }

    /// Marks the instance as timed out and kills its group.
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        self.kill(libc::SIGKILL);
    }

    /// Whether the scheduler asked this instance to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Whether the stop was a timeout.
    pub fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::SeqCst)
    }
}

/// What one command should look like when spawned.
pub struct Spec<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    /// Set on top of what the command inherits.
    pub env: &'a [(String, String)],
    /// `Some`: inherit nothing from hotpass but these (strict env mode).
    pub inherit_only: Option<&'a [(std::ffi::OsString, std::ffi::OsString)]>,
}

/// Runs `sh -c COMMAND` as a new process group, passing each output line to
/// `on_output`, and returns its exit status once every process of the group
/// is gone.
pub fn run(
    spec: &Spec,
    ctl: &Control,
    on_output: &(dyn Fn(Stream, &[u8]) + Sync),
) -> io::Result<ExitStatus> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(spec.command)
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(only) = spec.inherit_only {
        cmd.env_clear();
        cmd.envs(only.iter().map(|(k, v)| (k, v)));
    }
    for (k, v) in spec.env {
        cmd.env(k, v);
    }
    // If hotpass itself is killed outright (SIGKILL, OOM), take the task's
    // shell with it. The signal follows the spawning thread, and the worker
    // thread waits for this child, so it only fires if hotpass dies.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1); // hotpass died before the signal was armed
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    ctl.pgid.store(pid, Ordering::SeqCst);
    if ctl.is_cancelled() {
        // Cancelled between the check and the spawn: kill it now.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let status = std::thread::scope(|s| {
        s.spawn(|| pump(stdout, Stream::Stdout, on_output));
        s.spawn(|| pump(stderr, Stream::Stderr, on_output));
        // Wait for the leader to exit without reaping it, so its pid (the
        // group id) cannot be reused while we kill what it left behind.
        wait_exited_no_reap(pid);
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        child.wait()
    });
    ctl.pgid.store(0, Ordering::SeqCst);
    status
}

fn wait_exited_no_reap(pid: i32) {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn pump(reader: impl Read, stream: Stream, on_output: &(dyn Fn(Stream, &[u8]) + Sync)) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => on_output(stream, &line),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

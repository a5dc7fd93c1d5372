//! Spawning one shell command in its own process group, streaming its output
//! line by line, and killing the whole group on timeout, cancel or exit.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::capture::Stream;

/// Shared handle to the process group an instance is running, so the
/// scheduler can kill it while a worker thread waits on it.
#[derive(Debug)]
pub struct Control {
    pgid: AtomicI32,
    cancelled: AtomicBool,
    timed_out: AtomicBool,
    /// What a stop sends first, and how long it waits before SIGKILL.
    stop_signal: i32,
    stop_timeout: Duration,
    /// When a stop that began escalates to SIGKILL; whether it had to.
    escalate_at: std::sync::Mutex<Option<Instant>>,
    escalated: AtomicBool,
}

impl Default for Control {
    fn default() -> Self {
        Control::new(libc::SIGTERM, Duration::from_secs(5))
    }
}

impl Control {
    /// A control whose stops send `stop_signal`, then SIGKILL after `stop_timeout`.
    pub fn new(stop_signal: i32, stop_timeout: Duration) -> Control {
        Control {
            pgid: AtomicI32::new(0),
            cancelled: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            stop_signal,
            stop_timeout,
            escalate_at: std::sync::Mutex::new(None),
            escalated: AtomicBool::new(false),
        }
    }

    /// Kills the running group (if any) with `signal`, and stops further commands.
    pub fn kill(&self, signal: i32) {
        self.cancelled.store(true, Ordering::SeqCst);
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: killpg only sends a signal; a stale group id yields ESRCH.
            unsafe { libc::killpg(pgid, signal) };
        }
    }

    /// The one way an instance is stopped (Ctrl-C, a timeout, a watch
    /// restart): its stop signal to the whole group now, SIGKILL once its
    /// stop timeout has passed ([`Control::escalate_if_due`]).
    pub fn stop(&self) {
        let mut at = self.escalate_at.lock().expect("stop state");
        if at.is_none() {
            *at = Some(Instant::now() + self.stop_timeout);
            drop(at);
            self.kill(self.stop_signal);
            if self.stop_signal == libc::SIGKILL || self.stop_timeout.is_zero() {
                self.kill(libc::SIGKILL);
            }
        }
    }

    /// When a stop in progress escalates to SIGKILL.
    pub fn escalates_at(&self) -> Option<Instant> {
        if self.escalated.load(Ordering::SeqCst) {
            return None;
        }
        *self.escalate_at.lock().expect("stop state")
    }

    /// SIGKILLs the group if a stop's timeout has passed; says so once.
    pub fn escalate_if_due(&self, now: Instant, name: &str) {
        if self.escalates_at().is_some_and(|at| at <= now)
            && self.pgid.load(Ordering::SeqCst) > 0
            && !self.escalated.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(
                "{name}: still running {:?} after its stop signal; sending SIGKILL",
                self.stop_timeout
            );
            self.kill(libc::SIGKILL);
        }
    }

    /// Marks the instance as timed out and stops it.
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        self.stop();
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
    /// Record every file the command's processes touch here.
    pub audit: Option<&'a crate::audit::notify::Recorder>,
    /// Enforce this Landlock ruleset on the command's processes.
    pub landlock: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Runs `sh -c COMMAND` as a new process group, passing each output line to
/// `on_output`, and returns its exit status once every process of the group
/// is gone.
pub fn run(
    spec: &Spec,
    ctl: &Control,
    on_output: &(dyn Fn(Stream, &[u8]) + Sync),
) -> io::Result<ExitStatus> {
    use crate::audit::notify;
    let vars = super::spawn::environment(spec.inherit_only, spec.env);
    let method = match spec.audit {
        Some(_) => Some(notify::available().map_err(io::Error::other)?),
        None => None,
    };
    run_as(spec, ctl, on_output, &vars, method).map_err(|e| {
        use crate::audit::notify::Method;
        // Linux allows one listener per process tree, and a tracer's stops
        // rank below a listener's: an audit inside an audit sees nothing.
        let why = match (method, e.raw_os_error()) {
            (Some(Method::Notify), Some(libc::EBUSY)) => {
                "an audit cannot run inside another (hotpass itself runs under one)"
            }
            (Some(Method::Ptrace), Some(libc::EPERM)) => {
                "the task cannot be traced: hotpass itself runs under a tracer or an audit, \
                 or Yama's ptrace_scope forbids it"
            }
            _ => return e,
        };
        io::Error::other(format!("{e}: {why}"))
    })
}

/// [`run`], audited by `method` when the spec asks for an audit.
fn run_as(
    spec: &Spec,
    ctl: &Control,
    on_output: &(dyn Fn(Stream, &[u8]) + Sync),
    vars: &[(std::ffi::OsString, std::ffi::OsString)],
    method: Option<crate::audit::notify::Method>,
) -> io::Result<ExitStatus> {
    use crate::audit::notify::{self, Method};
    let filter = method.map(notify::Filter::for_method);
    let program = filter.as_ref().map(|f| f.program());
    let sockets = match method {
        Some(Method::Notify) => Some(notify::socket_pair()?),
        _ => None,
    };
    let audit_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The supervisor first: the shell's own exec already waits for it.
        let (ours, theirs) = match sockets {
            Some((ours, theirs)) => (Some(ours), Some(theirs)),
            None => (None, None),
        };
        if let (Some(recorder), Some(sock)) = (spec.audit, ours) {
            let done = &audit_done;
            s.spawn(move || notify::supervise(sock, recorder, done));
        }
        let confine = super::spawn::Confine {
            landlock: spec.landlock,
            seccomp: program
                .as_ref()
                .map(|p| (p, theirs.as_ref().map(|t| t.as_fd()))),
        };
        let spawned = super::spawn::spawn(spec.command, spec.cwd, vars, confine);
        // The child has the socket's other end, or never will.
        drop(theirs);
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                audit_done.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        let traced = spec.audit.filter(|_| method == Some(Method::Ptrace));
        let status = watch(spec, ctl, on_output, child, s, traced);
        audit_done.store(true, Ordering::SeqCst);
        status
    })
}

/// Streams a started command's output and waits for its whole group.
fn watch<'scope>(
    spec: &Spec,
    ctl: &Control,
    on_output: &'scope (dyn Fn(Stream, &[u8]) + Sync),
    child: super::spawn::Spawned,
    s: &'scope std::thread::Scope<'scope, '_>,
    traced: Option<&crate::audit::notify::Recorder>,
) -> io::Result<ExitStatus> {
    let pid = child.pid;
    ctl.pgid.store(pid, Ordering::SeqCst);
    if ctl.is_cancelled() {
        // Cancelled between the check and the spawn: kill it now.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
    let (stdout, stderr) = (child.stdout, child.stderr);
    let leader_gone = std::sync::Arc::new(AtomicBool::new(false));
    let pumps = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)].map(|(reader, stream)| {
        let gone = leader_gone.clone();
        s.spawn(move || pump(reader, stream, on_output, &gone))
    });
    // Wait for the leader to exit without reaping it, so its pid (the
    // group id) cannot be reused while we kill what it left behind.
    match traced {
        // This thread is the task's tracer: it follows it until then.
        Some(recorder) => crate::audit::trace::follow(pid, recorder),
        None => wait_exited_no_reap(pid),
    }
    unsafe { libc::killpg(pid, libc::SIGKILL) };
    // What it left outside its group (a setsid daemon) came back to
    // hotpass, the subreaper: stop it as the task would be stopped.
    let task = spec
        .env
        .iter()
        .find(|(k, _)| k == "HOTPASS_TASK")
        .map(|(_, v)| v.as_str());
    if task.is_some() {
        super::orphans::stop(task, ctl.stop_signal, ctl.stop_timeout);
    }
    leader_gone.store(true, Ordering::SeqCst);
    let status = reap(pid);
    for p in pumps {
        let _ = p.join();
    }
    ctl.pgid.store(0, Ordering::SeqCst);
    status
}

/// Waits for `pid` (already exited) and gives its status.
fn reap(pid: i32) -> io::Result<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
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

/// How long output is still read after the task's shell has exited and its
/// group was stopped: a process it left behind outside its group (a daemon
/// that called setsid) may hold the pipe open for ever, and is not waited for.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Reads `reader` line by line into `on_output` until end of file, or until
/// [`DRAIN_GRACE`] after `leader_gone` is set.
fn pump(
    mut reader: impl Read + AsRawFd,
    stream: Stream,
    on_output: &(dyn Fn(Stream, &[u8]) + Sync),
    leader_gone: &AtomicBool,
) {
    let fd = reader.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut gone_at: Option<Instant> = None;
    loop {
        let wait_ms = if leader_gone.load(Ordering::SeqCst) {
            let at = *gone_at.get_or_insert_with(Instant::now);
            let left = DRAIN_GRACE.saturating_sub(at.elapsed());
            if left.is_zero() {
                break;
            }
            left.as_millis().min(100) as i32
        } else {
            100
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a descriptor we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        if rc <= 0 {
            continue;
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut rest = &buf[..n];
                while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&rest[..=nl]);
                    on_output(stream, &line);
                    line.clear();
                    rest = &rest[nl + 1..];
                }
                line.extend_from_slice(rest);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if !line.is_empty() {
        on_output(stream, &line);
    }
}

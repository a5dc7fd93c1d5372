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
    // Once the leader has exited (not reaped, so its pid, the group id,
    // cannot be reused while we kill what it left behind): the rest of its
    // group is killed, and what it left outside its group (a setsid daemon)
    // came back to hotpass, the subreaper, and is stopped as the task
    // would be stopped.
    let after_exit = || {
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let task = spec
            .env
            .iter()
            .find(|(k, _)| k == "HOTPASS_TASK")
            .map(|(_, v)| v.as_str());
        if task.is_some() {
            super::orphans::stop(task, ctl.stop_signal, ctl.stop_timeout);
        }
    };
    // Untraced, this thread alone reads both pipes and learns of the
    // leader's exit, from one `poll` (with a pidfd: Linux 5.3 and later).
    let pidfd = match traced {
        None => pidfd_open(pid),
        Some(_) => None,
    };
    if let Some(pidfd) = pidfd {
        stream_until_exit(
            pid,
            &pidfd,
            [(stdout, Stream::Stdout), (stderr, Stream::Stderr)],
            on_output,
            after_exit,
        );
        let status = reap(pid);
        ctl.pgid.store(0, Ordering::SeqCst);
        return status;
    }
    let leader_gone = std::sync::Arc::new(AtomicBool::new(false));
    let pumps = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)].map(|(reader, stream)| {
        let gone = leader_gone.clone();
        s.spawn(move || pump(reader, stream, on_output, &gone))
    });
    match traced {
        // This thread is the task's tracer: it follows it until then.
        Some(recorder) => crate::audit::trace::follow(pid, recorder),
        None => wait_exited_no_reap(pid),
    }
    after_exit();
    leader_gone.store(true, Ordering::SeqCst);
    let status = reap(pid);
    for p in pumps {
        let _ = p.join();
    }
    ctl.pgid.store(0, Ordering::SeqCst);
    status
}

/// A pidfd of `pid`, our child; `None` where the kernel has none.
fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor the kernel just gave us, owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// One of a task's output pipes, read by [`stream_until_exit`].
struct Pipe<R> {
    reader: R,
    stream: Stream,
    /// A line begun and not yet ended.
    line: Vec<u8>,
    open: bool,
}

impl<R: Read> Pipe<R> {
    /// Reads what is there and gives `on_output` each whole line.
    fn read(&mut self, buf: &mut [u8], on_output: &(dyn Fn(Stream, &[u8]) + Sync)) {
        match self.reader.read(buf) {
            Ok(0) => self.close(on_output),
            Ok(n) => {
                let mut rest = &buf[..n];
                while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                    self.line.extend_from_slice(&rest[..=nl]);
                    on_output(self.stream, &self.line);
                    self.line.clear();
                    rest = &rest[nl + 1..];
                }
                self.line.extend_from_slice(rest);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.close(on_output),
        }
    }

    /// No more is read: what is left of a line is given as it is.
    fn close(&mut self, on_output: &(dyn Fn(Stream, &[u8]) + Sync)) {
        if self.open && !self.line.is_empty() {
            on_output(self.stream, &self.line);
        }
        self.line.clear();
        self.open = false;
    }
}

/// Reads a task's two output pipes line by line into `on_output` and
/// watches its leader through `pidfd`, all with one `poll`: when the leader
/// exits, `after_exit` runs, and the pipes are read until end of file or
/// for [`DRAIN_GRACE`] more (what the task left behind may hold them open).
/// While `after_exit` stops the task's orphans, nothing is read: an orphan
/// that writes more than a pipe holds as it stops waits for its SIGKILL,
/// after the stop timeout (the reading threads of the traced path read on).
fn stream_until_exit<R: Read + AsRawFd>(
    pid: i32,
    pidfd: &std::os::fd::OwnedFd,
    pipes: [(R, Stream); 2],
    on_output: &(dyn Fn(Stream, &[u8]) + Sync),
    after_exit: impl FnOnce(),
) {
    let mut pipes = pipes.map(|(reader, stream)| Pipe {
        reader,
        stream,
        line: Vec::new(),
        open: true,
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut after_exit = Some(after_exit);
    let mut gone_at: Option<Instant> = None;
    // Should the pidfd ever report an error instead, the leader is looked
    // for every 100 ms instead.
    let mut pidfd_failed = false;
    loop {
        let timeout = match gone_at {
            None if pidfd_failed => 100,
            None => -1,
            Some(at) => {
                let left = DRAIN_GRACE.saturating_sub(at.elapsed());
                if left.is_zero() {
                    break;
                }
                left.as_millis().max(1) as i32
            }
        };
        // The pipes still open, then the leader while it runs.
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::with_capacity(2);
        for (i, p) in pipes.iter().enumerate().filter(|(_, p)| p.open) {
            fds.push(libc::pollfd {
                fd: p.reader.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            which.push(i);
        }
        if fds.is_empty() && gone_at.is_some() {
            break;
        }
        let watching = gone_at.is_none() && !pidfd_failed;
        if watching {
            fds.push(libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: valid pollfds for descriptors we own.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for (fd, &i) in fds.iter().zip(&which) {
            if fd.revents != 0 {
                pipes[i].read(&mut buf, on_output);
            }
        }
        let exited = match fds.last() {
            Some(f) if watching && f.revents & libc::POLLIN != 0 => true,
            Some(f) if watching && f.revents != 0 => {
                pidfd_failed = true;
                false
            }
            _ => gone_at.is_none() && pidfd_failed && has_exited(pid),
        };
        if exited {
            if let Some(f) = after_exit.take() {
                f();
            }
            gone_at = Some(Instant::now());
        }
    }
    for p in &mut pipes {
        p.close(on_output);
    }
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

/// `waitid` for `pid` to have exited, not reaping it (`WNOWAIT`), with
/// `flags` besides (`WNOHANG`: without waiting): whether it has.
fn waitid_exited(pid: i32, flags: libc::c_int) -> io::Result<bool> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: asks about our own child, without reaping it.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | flags,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: si_pid is set when waitid found a child that exited.
    Ok(unsafe { info.si_pid() } == pid)
}

/// Whether `pid` has exited (it is not reaped).
fn has_exited(pid: i32) -> bool {
    waitid_exited(pid, libc::WNOHANG).unwrap_or(false)
}

/// Waits for `pid` to exit, without reaping it.
fn wait_exited_no_reap(pid: i32) {
    while let Err(e) = waitid_exited(pid, 0) {
        if e.kind() != io::ErrorKind::Interrupted {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader is watched without being reaped: `has_exited` answers
    /// without waiting, `wait_exited_no_reap` waits, and the exit status is
    /// still there for `reap` after both.
    #[test]
    fn an_exit_is_seen_without_reaping() {
        let (read, write) = std::io::pipe().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line; exit 3"])
            .stdin(read)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!has_exited(pid), "it waits for its line");
        drop(write);
        wait_exited_no_reap(pid);
        assert!(has_exited(pid));
        assert!(has_exited(pid), "asking again reaps nothing");
        assert_eq!(reap(pid).unwrap().code(), Some(3));
        // std never reaped it: its own wait finds nothing to reap.
        assert!(child.try_wait().is_err());
    }
}

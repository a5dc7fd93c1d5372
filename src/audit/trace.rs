//! The audit where seccomp user notification is missing: ptrace.
//!
//! The task's shell asks to be traced (`PTRACE_TRACEME`) and installs a
//! filter whose watched calls stop for the tracer (`SECCOMP_RET_TRACE`),
//! so the tracee stops only at those calls and at each exec, never at
//! every system call. The thread that started the shell is its tracer: it
//! follows every process and thread the task starts (fork, vfork, clone),
//! records what each stop names, and lets it go on.

use std::collections::HashSet;

use super::notify::{Access, Kind, Recorder, describe};

/// A stop's event, from a `waitpid` status.
fn event(status: i32) -> i32 {
    (status >> 16) & 0xff
}

/// The number and arguments of the call `pid` is stopped in.
#[cfg(target_arch = "x86_64")]
fn call(pid: libc::pid_t) -> Option<(libc::c_long, [u64; 6])> {
    // SAFETY: GETREGS fills a user_regs_struct of a stopped tracee.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r) };
    (rc == 0).then_some((
        r.orig_rax as libc::c_long,
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9],
    ))
}

/// The number and arguments of the call `pid` is stopped in.
#[cfg(target_arch = "aarch64")]
fn call(pid: libc::pid_t) -> Option<(libc::c_long, [u64; 6])> {
    // SAFETY: GETREGSET fills a user_regs_struct of a stopped tracee.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: &mut r as *mut _ as *mut libc::c_void,
        iov_len: std::mem::size_of::<libc::user_regs_struct>(),
    };
    let rc = unsafe { libc::ptrace(libc::PTRACE_GETREGSET, pid, libc::NT_PRSTATUS, &mut iov) };
    (rc == 0).then_some((
        r.regs[8] as libc::c_long,
        [
            r.regs[0], r.regs[1], r.regs[2], r.regs[3], r.regs[4], r.regs[5],
        ],
    ))
}

/// Lets a stopped tracee go on, delivering `signal` (0: none).
fn resume(pid: libc::pid_t, signal: i32) {
    // SAFETY: PTRACE_CONT of our own tracee; a vanished one is ESRCH.
    unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal as libc::c_long) };
}

/// Follows the task whose shell is `leader` (already stopped at its exec,
/// as `PTRACE_TRACEME` makes it) until the leader exits; the leader is
/// left unreaped, as the caller wants it. Every other tracee that ends is
/// reaped here.
pub fn follow(leader: libc::pid_t, recorder: &Recorder) {
    let mut status = 0;
    // The first stop: the shell's exec.
    // SAFETY: waiting for our own child.
    if unsafe { libc::waitpid(leader, &mut status, libc::__WALL) } != leader
        || !libc::WIFSTOPPED(status)
    {
        return;
    }
    let options = libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: setting options on our stopped tracee.
    unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, leader, 0, options as libc::c_long) };
    exec(leader, recorder);
    resume(leader, 0);
    // New tracees start with a SIGSTOP of their own, which is not theirs
    // to keep.
    let mut newborn: HashSet<libc::pid_t> = HashSet::new();
    loop {
        // Look first: the leader's exit must stay for the caller to reap.
        // SAFETY: a zeroed siginfo_t for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WSTOPPED | libc::WNOWAIT | libc::__WALL;
        // __WNOTHREAD: only this thread's children and tracees, never
        // another task's (each worker traces its own).
        let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags | libc::__WNOTHREAD) };
        if rc != 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // no tracee left
        }
        // SAFETY: waitid filled a child's state.
        let pid = unsafe { info.si_pid() };
        let exited = matches!(
            info.si_code,
            libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED
        );
        if pid == leader && exited {
            return;
        }
        // SAFETY: consuming the state just seen.
        if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid
            || !libc::WIFSTOPPED(status)
        {
            continue; // a tracee ended
        }
        let sig = libc::WSTOPSIG(status);
        match event(status) {
            libc::PTRACE_EVENT_SECCOMP => {
                if let Some((nr, args)) = call(pid) {
                    for a in describe(pid, nr, args) {
                        recorder.push(a);
                    }
                }
                resume(pid, 0);
            }
            libc::PTRACE_EVENT_EXEC => {
                exec(pid, recorder);
                resume(pid, 0);
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                let mut child: libc::c_ulong = 0;
                // SAFETY: GETEVENTMSG writes the new tracee's pid.
                unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut child) };
                newborn.insert(child as libc::pid_t);
                resume(pid, 0);
            }
            0 if sig == libc::SIGSTOP && newborn.remove(&pid) => resume(pid, 0),
            0 => {
                // A signal for the tracee: deliver it. A group stop (no
                // signal information) is let go on.
                // SAFETY: a zeroed siginfo_t for GETSIGINFO to fill.
                let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
                let delivery =
                    unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si) } == 0;
                resume(pid, if delivery { sig } else { 0 });
            }
            _ => resume(pid, 0),
        }
    }
}

/// Records what `pid` just exec'd: its new program.
fn exec(pid: libc::pid_t, recorder: &Recorder) {
    if let Ok(path) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        recorder.push(Access {
            kind: Kind::Exec,
            path,
        });
    }
}

//! Starting a task's shell without copying hotpass.
//!
//! `fork` copies the parent's page tables: on a large graph hotpass holds
//! hundreds of megabytes, and forking it for every task cost more than the
//! task (measured: 70% of a 100,000-task cold run). `posix_spawn` avoids
//! that, but cannot arm `PR_SET_PDEATHSIG`, which makes a task die with a
//! killed hotpass. So this does what `posix_spawn` does inside — a
//! `clone(CLONE_VM | CLONE_VFORK)` child on a small stack of its own, which
//! runs only async-signal-safe system calls until it execs — and arms the
//! death signal on the way.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// A started shell: its pid (leader of its own process group) and the read
/// ends of its stdout and stderr.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub stdout: File,
    pub stderr: File,
}

/// What the child reads: everything prepared by the parent (the child may
/// not allocate), and where it says why it could not exec.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    parent: libc::pid_t,
    error: *const AtomicI32,
    /// A Landlock ruleset to enforce, or -1.
    landlock: libc::c_int,
    /// A seccomp program to install (null: none) and the socket its
    /// listener goes to.
    seccomp: *const libc::sock_fprog,
    seccomp_sock: libc::c_int,
}

/// How a task's processes are confined or watched, set up by the parent.
#[derive(Default, Clone, Copy)]
pub struct Confine<'a> {
    /// Enforce this Landlock ruleset (a descriptor from
    /// `landlock_create_ruleset`).
    pub landlock: Option<std::os::fd::BorrowedFd<'a>>,
    /// Install this seccomp filter: with a socket, its listener goes there;
    /// without one, the child first asks to be traced by the calling thread.
    pub seccomp: Option<(&'a libc::sock_fprog, Option<std::os::fd::BorrowedFd<'a>>)>,
}

/// The child's stack: the child only makes system calls.
const STACK: usize = 64 * 1024;

/// `c` as a C string; a NUL inside is an error (no such command can run).
fn c_string(c: &[u8]) -> io::Result<CString> {
    CString::new(c).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

/// Where `sh` is, on the child's PATH (as `execvp` would look), else
/// `/bin/sh`. Looked up once per PATH the process meets (a whole `watch`
/// session included), as a shell hashes the commands it found: every task
/// starts one, and the lookup is a stat per folder of PATH.
fn find_sh(vars: &[(OsString, OsString)]) -> PathBuf {
    static FOUND: std::sync::Mutex<Vec<(OsString, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let path = vars
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, sh)) = found.iter().find(|(p, _)| *p == path) {
        return sh.clone();
    }
    let sh = look_up_sh(&path);
    found.push((path, sh.clone()));
    sh
}

/// Where `sh` is on `path`, else `/bin/sh`.
fn look_up_sh(path: &std::ffi::OsStr) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join("sh"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// A pipe whose both ends close on exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made, and are owned here only.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `sh -c command` in `cwd` with exactly `vars` as its environment,
/// stdin from /dev/null, stdout and stderr to pipes, as the leader of a new
/// process group, and armed to be SIGKILLed if the calling thread ends.
pub fn spawn(
    command: &str,
    cwd: &Path,
    vars: &[(OsString, OsString)],
    confine: Confine,
) -> io::Result<Spawned> {
    use std::os::fd::AsRawFd;
    let sh = c_string(find_sh(vars).as_os_str().as_bytes())?;
    let args = [
        c_string(b"sh")?,
        c_string(b"-c")?,
        c_string(command.as_bytes())?,
    ];
    let env = vars
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            c_string(&kv)
        })
        .collect::<io::Result<Vec<CString>>>()?;
    let cwd = c_string(cwd.as_os_str().as_bytes())?;
    let argv: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = File::open("/dev/null")?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let error = AtomicI32::new(0);
    let child_args = ChildArgs {
        path: sh.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ptr(),
        stdin: null.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        error: &error,
        landlock: confine.landlock.map_or(-1, |fd| fd.as_raw_fd()),
        seccomp: confine.seccomp.map_or(std::ptr::null(), |(prog, _)| {
            prog as *const libc::sock_fprog
        }),
        seccomp_sock: confine
            .seccomp
            .and_then(|(_, sock)| sock)
            .map_or(-1, |sock| sock.as_raw_fd()),
    };
    let mut stack = vec![0u8; STACK];
    // The stack grows down from its 16-byte aligned top.
    let top = ((stack.as_mut_ptr() as usize + STACK) & !15) as *mut libc::c_void;
    // No signal may run a handler of hotpass's in the child (it shares
    // hotpass's memory until it execs): block them all around the clone;
    // the child resets the handlers, then unblocks.
    // SAFETY: sigset_t values filled by sigfillset/pthread_sigmask.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &child_args as *const ChildArgs as *mut libc::c_void,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        pid
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // CLONE_VFORK: the child has exec'd or exited by now.
    let failed = error.load(Ordering::SeqCst);
    if failed != 0 {
        let mut status = 0;
        // SAFETY: reaping our own child, which has exited.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(failed));
    }
    drop((out_w, err_w, null, stack));
    Ok(Spawned {
        pid,
        stdout: File::from(out_r),
        stderr: File::from(err_r),
    })
}

/// The child: on hotpass's memory and a stack of its own, system calls only.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's ChildArgs, alive until we exec or exit
    // (the parent is suspended meanwhile); every call below is an
    // async-signal-safe system call on values prepared by the parent.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |a: &ChildArgs| -> libc::c_int {
            let errno = *libc::__errno_location();
            (*a.error).store(
                if errno == 0 { libc::EINVAL } else { errno },
                Ordering::SeqCst,
            );
            libc::_exit(127)
        };
        // Handlers are hotpass's code: back to the defaults (and SIGPIPE,
        // which Rust ignores, too), then no signal blocked, as in any shell.
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return fail(a);
        }
        // Die with the thread that started us; if hotpass is already gone,
        // the signal will never come: stop now.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != a.parent {
            libc::_exit(1);
        }
        for (from, to) in [(a.stdin, 0), (a.stdout, 1), (a.stderr, 2)] {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let done = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if done < 0 {
                return fail(a);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            return fail(a);
        }
        // Confinement last: what comes before must not be refused.
        if (a.landlock >= 0 || !a.seccomp.is_null())
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return fail(a);
        }
        if a.landlock >= 0 && libc::syscall(libc::SYS_landlock_restrict_self, a.landlock, 0) != 0 {
            return fail(a);
        }
        if !a.seccomp.is_null() {
            let installed = if a.seccomp_sock >= 0 {
                crate::audit::notify::install_in_child(a.seccomp, a.seccomp_sock)
            } else {
                crate::audit::notify::install_traced_in_child(a.seccomp)
            };
            if !installed {
                return fail(a);
            }
        }
        libc::execve(a.path, a.argv, a.envp);
        fail(a)
    }
}

/// The environment a task's shell gets: `inherit_only` (strict mode) or all
/// of hotpass's, then `env` on top.
pub fn environment(
    inherit_only: Option<&[(OsString, OsString)]>,
    env: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = match inherit_only {
        Some(only) => only.to_vec(),
        None => std::env::vars_os().collect(),
    };
    for (k, v) in env {
        vars.retain(|(name, _)| name.as_os_str() != OsStr::new(k));
        vars.push((k.into(), v.into()));
    }
    vars
}

//! Seeing every file a task's processes touch: a seccomp filter with user
//! notification.
//!
//! The task's shell installs, just before it execs, a filter that turns the
//! file system calls that name a path (the `open`, `exec`, `creat`,
//! `rename`, `unlink`, `link`, `symlink` and `truncate` families) into
//! notifications. Every process the task starts inherits it, statically
//! linked or not. hotpass receives each notification on the filter's
//! listener, reads the path from the caller's memory, resolves it against
//! the caller's working folder or `dirfd` through `/proc`, records it, and
//! lets the call go on unchanged (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
//!
//! Needs Linux 5.5 (user notification with "continue"); nothing else, no
//! privilege: the filter is installed under `no_new_privs`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a call did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Opened for reading.
    Read,
    /// Executed (its content is read).
    Exec,
    /// Opened for reading and writing.
    ReadWrite,
    /// Opened for writing, created, or the new name of a rename or link.
    Write,
    /// Unlinked, or the old name of a rename.
    Delete,
}

/// One recorded call: what it did, to which absolute path (as the caller
/// named it, joined to its working folder or `dirfd`; not canonical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub kind: Kind,
    pub path: PathBuf,
}

/// Where a task's accesses are collected, in the order they happened.
#[derive(Debug, Default)]
pub struct Recorder {
    accesses: Mutex<Vec<Access>>,
}

impl Recorder {
    pub(super) fn push(&self, a: Access) {
        self.accesses.lock().expect("audit record").push(a);
    }

    /// Everything recorded so far.
    pub fn take(&self) -> Vec<Access> {
        std::mem::take(&mut *self.accesses.lock().expect("audit record"))
    }
}

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// The system calls the filter sends to hotpass.
fn watched() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_unlinkat,
        libc::SYS_linkat,
        libc::SYS_symlinkat,
        libc::SYS_truncate,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        libc::SYS_open,
        libc::SYS_creat,
        libc::SYS_rename,
        libc::SYS_unlink,
        libc::SYS_link,
        libc::SYS_symlink,
    ]);
    calls
}

/// How the audit hears of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A seccomp listener, answered from a hotpass thread (Linux 5.5+).
    Notify,
    /// ptrace, stopping only at the watched calls (seccomp `RET_TRACE`)
    /// and at each exec: where user notification is missing.
    Ptrace,
}

/// The filter: calls of another architecture and unwatched calls are
/// allowed; watched ones notify the listener (or stop for the tracer).
pub struct Filter {
    code: Vec<libc::sock_filter>,
}

impl Filter {
    /// The filter for `method`. Under ptrace, execs are not stopped on:
    /// the tracer learns them from its exec events (a filter's stop
    /// before the tracer has set its options would fail the call).
    pub fn for_method(method: Method) -> Filter {
        let mut f = Filter::notifying();
        if method == Method::Ptrace {
            let notify = f.code.len() - 1;
            f.code[notify].k = libc::SECCOMP_RET_TRACE;
            let execs = [libc::SYS_execve as u32, libc::SYS_execveat as u32];
            for ins in f.code.iter_mut().skip(4) {
                if execs.contains(&ins.k) && ins.jt > 0 {
                    ins.jt -= 1; // onto the allow, just before the trace
                }
            }
        }
        f
    }

    /// The filter whose watched calls notify a listener.
    fn notifying() -> Filter {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        let calls = watched();
        let n = calls.len();
        let mut code = vec![
            stmt(load, 4), // seccomp_data.arch
            jeq(ARCH, 1, 0),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
            stmt(load, 0), // seccomp_data.nr
        ];
        for (i, nr) in calls.iter().enumerate() {
            // Taken: jump past the rest and the allow, to the notify.
            code.push(jeq(*nr as u32, (n - i) as u8, 0));
        }
        code.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        code.push(stmt(ret, libc::SECCOMP_RET_USER_NOTIF));
        Filter { code }
    }

    /// The program, as `seccomp(2)` takes it; valid while `self` lives.
    pub fn program(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            len: self.code.len() as u16,
            filter: self.code.as_ptr() as *mut libc::sock_filter,
        }
    }
}

/// How this machine can audit: seccomp user notification where the kernel
/// has it, else ptrace; `HOTPASS_AUDIT_METHOD=ptrace` (or `notify`)
/// chooses. Probed once.
pub fn available() -> Result<Method, String> {
    static PROBE: std::sync::OnceLock<Result<Method, String>> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<Method, String> {
    let actions = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .map_err(|e| format!("this kernel has no seccomp filters ({e})"))?;
    let has = |a: &str| actions.split_whitespace().any(|w| w == a);
    let wanted = std::env::var("HOTPASS_AUDIT_METHOD").unwrap_or_default();
    match wanted.as_str() {
        "ptrace" if has("trace") => Ok(Method::Ptrace),
        "ptrace" => Err("this kernel's seccomp filters cannot stop for a tracer".into()),
        "notify" if has("user_notif") => Ok(Method::Notify),
        "notify" => Err(
            "this kernel has no seccomp user notification (Linux 5.5 or later is needed)".into(),
        ),
        "" if has("user_notif") => Ok(Method::Notify),
        "" if has("trace") => Ok(Method::Ptrace),
        "" => Err("this kernel's seccomp filters can neither notify nor trace".into()),
        other => Err(format!(
            "HOTPASS_AUDIT_METHOD is `{other}`; use `notify` or `ptrace`, or unset it"
        )),
    }
}

/// The child's half: a socket to send the listener on. Called in the
/// child between its last setup and its exec; system calls only.
///
/// # Safety
/// Only from a child about to exec; `prog` must point to a live program.
pub unsafe fn install_in_child(prog: *const libc::sock_fprog, sock: RawFd) -> bool {
    // SAFETY: plain system calls on values the parent prepared.
    unsafe {
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            prog,
        ) as libc::c_int;
        if listener < 0 {
            return false;
        }
        let sent = send_fd(sock, listener);
        libc::close(listener);
        sent
    }
}

/// One byte of data and room for one descriptor (aligned as `cmsghdr`
/// wants): what [`send_fd`] sends and [`recv_fd`] receives.
struct Message {
    byte: u8,
    iov: libc::iovec,
    control: [u64; 4],
    msg: libc::msghdr,
}

impl Message {
    /// Points the header at the buffers; `self` must not move afterwards.
    ///
    /// # Safety
    /// Plain writes into a value on the caller's stack.
    unsafe fn wire(&mut self, controllen: usize) {
        self.iov = libc::iovec {
            iov_base: &mut self.byte as *mut u8 as *mut libc::c_void,
            iov_len: 1,
        };
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.control.as_mut_ptr() as *mut libc::c_void;
        self.msg.msg_controllen = controllen as _;
    }

    fn new() -> Message {
        // SAFETY: all-zero is a valid iovec and msghdr (null pointers).
        unsafe { std::mem::zeroed() }
    }
}

/// Installs a filter without a listener (its watched calls stop for the
/// tracer). Called in the child; system calls only.
///
/// # Safety
/// Only from a child about to exec; `prog` must point to a live program.
pub unsafe fn install_traced_in_child(prog: *const libc::sock_fprog) -> bool {
    // SAFETY: plain system calls on values the parent prepared.
    unsafe {
        libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0
            && libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, prog) == 0
    }
}

/// Sends `fd` over the Unix socket `sock` (SCM_RIGHTS); system calls only.
unsafe fn send_fd(sock: RawFd, fd: RawFd) -> bool {
    // SAFETY: a message built on the stack, for sendmsg.
    unsafe {
        let mut m = Message::new();
        m.wire(libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize);
        let cmsg = libc::CMSG_FIRSTHDR(&m.msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        libc::sendmsg(sock, &m.msg, libc::MSG_NOSIGNAL) == 1
    }
}

/// Receives a descriptor sent by [`send_fd`]; `None` at end of file (the
/// child ended, or exec'd, without sending one).
fn recv_fd(sock: RawFd) -> Option<OwnedFd> {
    // SAFETY: a message buffer on the stack for recvmsg; a received
    // descriptor is owned here from then on.
    unsafe {
        let mut m = Message::new();
        m.wire(std::mem::size_of::<[u64; 4]>());
        let msg = &mut m.msg;
        loop {
            let n = libc::recvmsg(sock, &mut *msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return None;
            }
            break;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&*msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        Some(OwnedFd::from_raw_fd(fd))
    }
}

/// A connected pair of Unix sockets, both closed on exec: (hotpass's end,
/// the child's end).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors to fill.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just made and are owned here only.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// hotpass's half, on a thread of its own: waits for the child's listener
/// on `sock`, then answers every notification (recording its path) until
/// no process holds the filter any more, or `done` is set and nothing is
/// pending.
pub fn supervise(sock: OwnedFd, recorder: &Recorder, done: &AtomicBool) {
    let Some(listener) = recv_fd(sock.as_raw_fd()) else {
        return;
    };
    drop(sock);
    let fd = listener.as_raw_fd();
    // Linux 6.6+: wake the task on this thread's core when answered (a
    // notification round trip is a context switch, not a migration).
    const SYNC_WAKE_UP: u64 = 1; // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
    // SAFETY: NOTIF_SET_FLAGS takes the flags by value; failing is fine.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, SYNC_WAKE_UP) };
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let finishing = done.load(Ordering::SeqCst);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, if finishing { 0 } else { 50 }) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if rc == 0 {
            if finishing {
                return;
            }
            continue;
        }
        if pfd.revents & libc::POLLIN != 0 {
            answer(fd, recorder);
        } else if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return; // every process that had the filter is gone
        }
    }
}

/// Receives one notification, records what it names, lets the call go on.
fn answer(listener: RawFd, recorder: &Recorder) {
    // SAFETY: the kernel wants a zeroed notification to fill.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV fills `req`.
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
        return; // ENOENT: the caller was killed meanwhile
    }
    let found = describe(
        req.pid as libc::pid_t,
        req.data.nr as libc::c_long,
        req.data.args,
    );
    // The caller may have died and its pid been reused while we read its
    // memory: only a notification still pending was read from the caller.
    let mut id = req.id;
    // SAFETY: NOTIF_ID_VALID reads one u64.
    let valid = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) } == 0;
    if valid {
        for a in found {
            recorder.push(a);
        }
    }
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: NOTIF_SEND reads `resp`; failing (the caller is gone) is fine.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
}

const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

/// What the call `nr` with arguments `a`, made by `pid` and stopped
/// before it runs, does to which paths.
pub(super) fn describe(pid: libc::pid_t, nr: libc::c_long, a: [u64; 6]) -> Vec<Access> {
    let at = |dirfd: u64, ptr: u64| resolve(pid, dirfd as i32 as i64, ptr);
    let open_kind = |flags: u64| -> Option<Kind> {
        let flags = flags as i32;
        if flags & libc::O_PATH != 0 || flags & libc::O_DIRECTORY != 0 {
            return None; // no content is read or written through it
        }
        Some(match flags & libc::O_ACCMODE {
            libc::O_WRONLY => Kind::Write,
            libc::O_RDWR if flags & libc::O_TRUNC != 0 => Kind::Write,
            libc::O_RDWR => Kind::ReadWrite,
            _ if flags & libc::O_TRUNC != 0 => Kind::Write,
            _ => Kind::Read,
        })
    };
    let one = |kind: Option<Kind>, path: Option<PathBuf>| -> Vec<Access> {
        match (kind, path) {
            (Some(kind), Some(path)) => vec![Access { kind, path }],
            _ => Vec::new(),
        }
    };
    let two = |first: (Kind, Option<PathBuf>), second: (Kind, Option<PathBuf>)| {
        [first, second]
            .into_iter()
            .filter_map(|(kind, path)| Some(Access { kind, path: path? }))
            .collect()
    };
    #[cfg(target_arch = "x86_64")]
    {
        let cwd = AT_FDCWD as u64;
        match nr {
            libc::SYS_open => return one(open_kind(a[1]), at(cwd, a[0])),
            libc::SYS_creat => return one(Some(Kind::Write), at(cwd, a[0])),
            libc::SYS_rename => {
                return two((Kind::Delete, at(cwd, a[0])), (Kind::Write, at(cwd, a[1])));
            }
            libc::SYS_unlink => return one(Some(Kind::Delete), at(cwd, a[0])),
            libc::SYS_link => return one(Some(Kind::Write), at(cwd, a[1])),
            libc::SYS_symlink => return one(Some(Kind::Write), at(cwd, a[1])),
            _ => {}
        }
    }
    match nr {
        libc::SYS_openat => one(open_kind(a[2]), at(a[0], a[1])),
        libc::SYS_openat2 => {
            let flags = read_memory(pid, a[2], 8)
                .and_then(|b| Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?)));
            one(flags.and_then(open_kind), at(a[0], a[1]))
        }
        libc::SYS_execve => one(Some(Kind::Exec), at(AT_FDCWD as u64, a[0])),
        libc::SYS_execveat => {
            let path = match read_c_string(pid, a[1]) {
                Some(p) if p.is_empty() && a[4] as i32 & libc::AT_EMPTY_PATH != 0 => {
                    proc_link(pid, &format!("fd/{}", a[0] as i32))
                }
                _ => at(a[0], a[1]),
            };
            one(Some(Kind::Exec), path)
        }
        libc::SYS_renameat | libc::SYS_renameat2 => two(
            (Kind::Delete, at(a[0], a[1])),
            (Kind::Write, at(a[2], a[3])),
        ),
        libc::SYS_unlinkat if a[2] as i32 & libc::AT_REMOVEDIR == 0 => {
            one(Some(Kind::Delete), at(a[0], a[1]))
        }
        libc::SYS_linkat => one(Some(Kind::Write), at(a[2], a[3])),
        libc::SYS_symlinkat => one(Some(Kind::Write), at(a[1], a[2])),
        libc::SYS_truncate => one(Some(Kind::Write), at(AT_FDCWD as u64, a[0])),
        _ => Vec::new(),
    }
}

/// The absolute path a call names with `dirfd` and the string at `ptr` in
/// the caller's memory.
fn resolve(pid: libc::pid_t, dirfd: i64, ptr: u64) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = read_c_string(pid, ptr)?;
    if bytes.is_empty() {
        return None;
    }
    let path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
    if path.is_absolute() {
        return Some(path);
    }
    let base = if dirfd == AT_FDCWD {
        proc_link(pid, "cwd")?
    } else {
        proc_link(pid, &format!("fd/{dirfd}"))?
    };
    Some(base.join(path))
}

/// `/proc/PID/WHAT`'s target (the caller's cwd, or what one of its
/// descriptors names).
fn proc_link(pid: libc::pid_t, what: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/{what}")).ok()
}

/// The NUL-terminated string at `ptr` in `pid`'s memory (at most PATH_MAX).
fn read_c_string(pid: libc::pid_t, ptr: u64) -> Option<Vec<u8>> {
    const PAGE: u64 = 4096;
    const MAX: usize = libc::PATH_MAX as usize;
    let mut out = Vec::new();
    let mut at = ptr;
    while out.len() < MAX {
        // Never across a page: the next one may not be mapped.
        let len = (PAGE - at % PAGE) as usize;
        let chunk = read_memory(pid, at, len)?;
        if let Some(nul) = chunk.iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Some(out);
        }
        out.extend_from_slice(&chunk);
        at += len as u64;
    }
    None
}

/// `len` bytes at `ptr` in `pid`'s memory.
fn read_memory(pid: libc::pid_t, ptr: u64, len: usize) -> Option<Vec<u8>> {
    if ptr == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: ptr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: reads into our own buffer of `len` bytes.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

//! A temporary project: write files, run the real binary, read results.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A project in a temporary folder.
pub struct Project {
    dir: TempDir,
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The path of the hotpass binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hotpass"))
}

impl Project {
    /// A project whose hotpass.toml holds `config`.
    pub fn new(config: &str) -> Project {
        let p = Project {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        p.write("hotpass.toml", config);
        p
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Absolute path of `rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file, creating folders.
    pub fn write(&self, rel: &str, contents: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    /// Reads a file ("" when missing).
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// Whether a file exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// A command for the binary in the project root, with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args);
        self.hermetic(&mut c);
        c.env("NO_COLOR", "1");
        c
    }

    /// The binary with `args` on a real terminal (script(1) from
    /// util-linux), in the same clean environment, colours allowed.
    pub fn on_pty(&self, args: &str) -> Command {
        let mut c = Command::new("script");
        c.args(["-qfec", &format!("{} {args}", bin().display()), "/dev/null"]);
        self.hermetic(&mut c);
        c.env("TERM", "xterm");
        c
    }

    /// Runs in the project with none of the variables that would change
    /// what hotpass does, and no standard input.
    fn hermetic(&self, c: &mut Command) {
        c.current_dir(self.root())
            .env_remove("NO_COLOR")
            .env_remove("HOTPASS_CACHE_DIR")
            .env_remove("HOTPASS_TODAY")
            .env_remove("HOTPASS_NOW")
            .env_remove("HOTPASS_LOG")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("SECRET")
            .env_remove("FORCE_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CARGO_TERM_COLOR")
            .env_remove("PY_COLORS")
            .env_remove("CI")
            .env_remove("HOTPASS_REMOTE_CACHE")
            .env_remove("HOTPASS_REMOTE_CACHE_KEY")
            .env_remove("HOTPASS_CACHE_SALT")
            .env_remove("OPENLINEAGE_URL")
            .env_remove("OPENLINEAGE_NAMESPACE")
            .env_remove("OPENLINEAGE_API_KEY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("TRACEPARENT")
            .stdin(Stdio::null());
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs the binary with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out: Output = c.output().expect("run hotpass");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs with `--summary` and returns the run and the parsed summary.
    pub fn run_summary(&self, args: &[&str], env: &[(&str, &str)]) -> (Run, serde_json::Value) {
        let summary = self.path("summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut all: Vec<&str> = args.to_vec();
        let s = summary.to_str().unwrap().to_owned();
        all.push("--summary");
        all.push(&s);
        let run = self.run_env(&all, env);
        let json = std::fs::read_to_string(&summary)
            .unwrap_or_else(|_| panic!("no summary written\n{run:?}"));
        (run, serde_json::from_str(&json).expect("summary is JSON"))
    }

    /// Starts the binary in the background; the guard kills it when dropped.
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hotpass");
        ChildGuard(Some(child))
    }
}

/// The status of each instance in a summary, as `name -> status`.
pub fn statuses(summary: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    summary["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts that `text` contains `needle`, showing `text` when it does not.
#[track_caller]
pub fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// The summary entry of one instance.
#[track_caller]
pub fn instance<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no instance {name} in {summary}"))
}

/// Asserts that every instance of a run came from the cache.
#[track_caller]
pub fn assert_all_cached(summary: &serde_json::Value) {
    assert!(
        statuses(summary).values().all(|v| v == "cached"),
        "not all cached: {summary}"
    );
}

/// The names of the instances with this status, sorted.
pub fn with_status(summary: &serde_json::Value, status: &str) -> Vec<String> {
    statuses(summary)
        .into_iter()
        .filter(|(_, v)| v == status)
        .map(|(k, _)| k)
        .collect()
}

/// Waits until `cond` holds, for at most `limit`; returns whether it did.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether a process with this pid still exists (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A child process that is killed (and reaped) if the test ends early.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Sends a signal to the child.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.0 {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits for exit up to `limit`, returning the exit code and what the
    /// child printed on stdout, then stderr (or None on timeout).
    pub fn wait_output(&mut self, limit: Duration) -> Option<(Option<i32>, String)> {
        use std::io::Read;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.as_mut().unwrap().try_wait().unwrap() {
                let mut child = self.0.take().unwrap();
                let mut out = String::new();
                if let Some(mut pipe) = child.stdout.take() {
                    let _ = pipe.read_to_string(&mut out);
                }
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut out);
                }
                let _ = child.wait(); // already exited: reaps it
                return Some((status.code(), out));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits for exit up to `limit`, returning the exit code (or None on timeout).
    pub fn wait_code(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.0.as_mut().unwrap().try_wait().unwrap() {
                self.0.take();
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A long-running hotpass (watch) whose output is collected as it arrives.
pub struct Watcher {
    pub child: ChildGuard,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Project {
    /// Starts `hotpass ARGS` and collects its stdout and stderr.
    pub fn watch(&self, args: &[&str]) -> Watcher {
        use std::io::BufRead;
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hotpass");
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        Watcher {
            child: ChildGuard(Some(child)),
            output,
        }
    }
}

impl Watcher {
    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (at most 20 s) until `needle` has been printed `n` times.
    #[track_caller]
    pub fn wait_count(&self, needle: &str, n: usize) {
        let ok = wait_for(Duration::from_secs(20), || {
            self.output().matches(needle).count() >= n
        });
        assert!(
            ok,
            "waited for {n} x {needle:?}; output so far:\n{}",
            self.output()
        );
    }

    /// Waits (at most 20 s) for `cond` on a project file or anything else.
    #[track_caller]
    pub fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        assert!(
            wait_for(Duration::from_secs(20), cond),
            "waited for {what}; output so far:\n{}",
            self.output()
        );
    }
}

/// A loopback port nothing listens on (for a server to start on, or for a
/// client to be refused by).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `python3` can import `modules` (a comma-separated import line).
/// Where it cannot, the caller skips with a printed reason, except under
/// `HOTPASS_TEST_TOOLS=1` (CI), where that is a failure.
pub fn python_has(modules: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("HOTPASS_TEST_TOOLS").as_deref() != Ok("1"),
            "python3 with {modules} is required (HOTPASS_TEST_TOOLS=1)"
        );
        eprintln!("skipping: python3 -m pip install {install}");
    }
    ok
}

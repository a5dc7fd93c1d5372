//! The remote cache against real servers started here on loopback: nginx
//! with WebDAV, redis-server, and an S3-compatible server (moto). Each test
//! starts its own server on a free port and stops it when done. A server
//! that is not installed skips the test with a printed reason, unless
//! `HOTPASS_TEST_SERVERS=1` (as `.ci/run` sets it) makes that a failure.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Project, assert_has, instance, wait_for};

/// A server process, stopped (and its files removed) when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The folder nginx serves (WebDAV files).
    fn files(&self) -> PathBuf {
        self.dir.path().join("dav")
    }
}

fn required() -> bool {
    std::env::var("HOTPASS_TEST_SERVERS").is_ok_and(|v| v == "1")
}

/// The program, if installed; otherwise a skip (or a failure in CI).
fn program(name: &str, places: &[&str]) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .chain(places.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(!required(), "{name} is required (HOTPASS_TEST_SERVERS=1)");
        eprintln!("skipping: {name} is not installed");
    }
    found
}

use crate::support::free_port;

fn start(mut c: Command, port: u16, dir: tempfile::TempDir) -> Server {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let mut s = Server { child, port, dir };
    let up = wait_for(Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !up {
        s.stop();
        panic!("the server on port {port} did not come up");
    }
    s
}

fn nginx() -> Option<Server> {
    let bin = program("nginx", &["/usr/sbin/nginx"])?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("dav")).unwrap();
    let port = free_port();
    let module = ["/usr/lib/nginx/modules/ngx_http_dav_ext_module.so"]
        .iter()
        .find(|m| Path::new(m).is_file())
        .map(|m| format!("load_module {m};"))
        .unwrap_or_default();
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let conf = format!(
        "{module}\n{user}\ndaemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         server {{\n  listen 127.0.0.1:{port};\n  root {d}/dav;\n  client_max_body_size 0;\n\
         location / {{\n   dav_methods PUT DELETE MKCOL COPY MOVE;\n   dav_ext_methods PROPFIND OPTIONS;\n\
         create_full_put_path on;\n   dav_access user:rw group:rw all:r;\n  }}\n }}\n}}\n",
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let mut c = Command::new(bin);
    c.arg("-c").arg(d.join("nginx.conf")).arg("-p").arg(d);
    Some(start(c, port, dir))
}

fn redis() -> Option<Server> {
    let bin = program("redis-server", &[])?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = Command::new(bin);
    c.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
    ])
    .args(["--appendonly", "no", "--dir"])
    .arg(dir.path());
    Some(start(c, port, dir))
}

fn moto() -> Option<Server> {
    let bin = program("moto_server", &[])?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = Command::new(bin);
    c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let s = start(c, port, dir);
    // The bucket: moto takes an unsigned PUT.
    use std::io::{Read, Write};
    let mut t = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        t,
        "PUT /hotpass HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = t.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "creating the bucket: {reply}"
    );
    Some(s)
}

/// How a machine reaches one remote.
struct Remote {
    url: String,
    env: Vec<(String, String)>,
}

impl Remote {
    fn webdav(s: &Server) -> Remote {
        Remote {
            url: format!("webdav+http://127.0.0.1:{}/cache", s.port),
            env: vec![],
        }
    }
    fn redis(s: &Server) -> Remote {
        Remote {
            url: format!("redis://127.0.0.1:{}/0", s.port),
            env: vec![],
        }
    }
    fn s3(s: &Server) -> Remote {
        Remote {
            url: "s3://hotpass/team".into(),
            env: [
                ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", s.port)),
                ("AWS_ACCESS_KEY_ID", "testing".into()),
                ("AWS_SECRET_ACCESS_KEY", "testing".into()),
                ("AWS_REGION", "us-east-1".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }
    }
}

/// A project whose tasks share a remote: `build` (with a `$NAME` input,
/// whose digest takes the salt) writes `out/build.txt`; `check` reads it.
fn project() -> Project {
    let p = Project::new(
        "[tasks.build]\nrun = \"mkdir -p out && cat src/a.txt > out/build.txt && echo built\"\n\
         inputs = [\"src/*\", \"$TOKEN\"]\noutputs = [\"out/build.txt\"]\n\
         [tasks.check]\ndeps = [\"build\"]\nrun = \"cat out/build.txt > out/check.txt\"\n\
         inputs = [\"out/build.txt\"]\noutputs = [\"out/check.txt\"]\n",
    );
    p.write("src/a.txt", "hello\n");
    p
}

/// One machine: its own cache folder, the remote, `CI` as given.
fn machine(
    p: &Project,
    remote: &Remote,
    cache: &str,
    ci: bool,
    extra: &[(&str, &str)],
    args: &[&str],
) -> (crate::support::Run, serde_json::Value) {
    let mut env: Vec<(&str, &str)> = vec![
        ("HOTPASS_CACHE_DIR", cache),
        ("HOTPASS_REMOTE_CACHE", &remote.url),
        ("TOKEN", "t0k3n"),
    ];
    if ci {
        env.push(("CI", "true"));
    }
    env.extend(remote.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.extend_from_slice(extra);
    let mut all = vec!["run", "--summary", "summary.json"];
    all.extend_from_slice(args);
    let r = p.run_env(&all, &env);
    let summary = serde_json::from_str(&p.read("summary.json")).unwrap_or_default();
    (r, summary)
}

/// Machine A runs and uploads; machine B (a fresh cache folder, the tree's
/// outputs gone) restores everything from the remote, byte for byte, a
/// `$NAME` task included: both took the remote's salt.
fn shares_across_machines(remote: &Remote) {
    let p = project();
    let (r, s) = machine(&p, remote, "cache-a", true, &[], &[]);
    r.code(0);
    assert_eq!(s["counts"]["ran"], 2, "{}", r.stderr);
    assert_eq!(s["remote_cache"]["uploads"], 2, "{}", r.stdout);
    assert_has(&r.stdout, "read-write (CI=true)");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = machine(&p, remote, "cache-b", false, &[], &[]);
    r.code(0);
    assert_eq!(s["counts"]["cached"], 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(s["remote_cache"]["hits"], 2);
    assert_eq!(s["remote_cache"]["uploads"], 0);
    assert_has(&r.stdout, "read-only (not CI)");
    assert_eq!(p.read("out/build.txt"), "hello\n");
    assert_eq!(p.read("out/check.txt"), "hello\n");
    assert_has(&r.stdout, "built");
    let r = p.run_env(
        &["cache", "stats"],
        &[
            ("HOTPASS_CACHE_DIR", "cache-b"),
            ("HOTPASS_REMOTE_CACHE", remote.url.as_str()),
        ],
    );
    r.code(0);
    assert_has(&r.stdout, "2 remote hits");
}

#[test]
fn webdav_shares_results_between_machines() {
    let Some(s) = nginx() else { return };
    shares_across_machines(&Remote::webdav(&s));
}

#[test]
fn redis_shares_results_between_machines() {
    let Some(s) = redis() else { return };
    shares_across_machines(&Remote::redis(&s));
}

#[test]
fn s3_shares_results_between_machines() {
    let Some(s) = moto() else { return };
    shares_across_machines(&Remote::s3(&s));
}

/// Without `CI=true` nothing is written; `read_only = true` holds even in
/// CI; `read_only = false` writes from anywhere.
#[test]
fn only_ci_writes_unless_told() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let p = project();
    let entries = s.files().join("cache/v1/entries");
    let count = || std::fs::read_dir(&entries).map_or(0, |d| d.count());
    let (r, _) = machine(&p, &remote, "c1", false, &[], &[]);
    r.code(0);
    assert_eq!(count(), 0, "a laptop only reads by default");
    let config = p.read("hotpass.toml");
    p.write(
        "hotpass.toml",
        &format!(
            "[settings.remote_cache]\nurl = \"{}\"\nread_only = true\n{config}",
            remote.url
        ),
    );
    let (r, _) = machine(&p, &remote, "c2", true, &[], &[]);
    r.code(0);
    assert_has(&r.stdout, "read-only (read_only = true)");
    assert_eq!(count(), 0, "read_only = true never writes");
    p.write(
        "hotpass.toml",
        &format!(
            "[settings.remote_cache]\nurl = \"{}\"\nread_only = false\n{config}",
            remote.url
        ),
    );
    let (r, _) = machine(&p, &remote, "c3", false, &[], &[]);
    r.code(0);
    assert_eq!(count(), 2, "read_only = false writes from anywhere");
}

/// A damaged blob on the remote is found (its hash), refused with a
/// warning, and the task rebuilt; the rebuilt result replaces the blob.
#[test]
fn a_corrupted_remote_blob_is_detected_and_rebuilt() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let p = project();
    machine(&p, &remote, "a", true, &[], &["build"]).0.code(0);
    let blobs = s.files().join("cache/v1/blobs");
    let mut damaged = 0;
    for b in std::fs::read_dir(&blobs).unwrap().flatten() {
        if std::fs::read(b.path()).unwrap() == b"hello\n" {
            std::fs::write(b.path(), "HELLO\n").unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s1) = machine(&p, &remote, "b", true, &[], &["build"]);
    r.code(0);
    assert_has(&r.stderr, "fails its integrity check");
    assert_eq!(instance(&s1, "build")["status"], "ok");
    assert_eq!(p.read("out/build.txt"), "hello\n");
    // The upload replaced the damaged blob: a third machine restores it.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s2) = machine(&p, &remote, "c", true, &[], &["build"]);
    r.code(0);
    assert_eq!(instance(&s2, "build")["status"], "cached", "{}", r.stderr);
    assert_eq!(p.read("out/build.txt"), "hello\n");
}

/// A remote that dies during the run: the run finishes locally, with one
/// warning, and the exit code is the tasks' own.
#[test]
fn a_remote_killed_mid_run_is_one_warning() {
    let Some(mut s) = redis() else { return };
    let remote = Remote::redis(&s);
    let p = project();
    // `build` stops the server as it runs: `check`'s lookup and both
    // uploads then fail.
    let pid = s.child.id();
    let config = p
        .read("hotpass.toml")
        .replace("&& echo built", &format!("&& echo built && kill -9 {pid}"));
    p.write("hotpass.toml", &config);
    let (r, summary) = machine(&p, &remote, "a", true, &[], &[]);
    r.code(0);
    assert_eq!(summary["counts"]["ran"], 2);
    assert_eq!(
        r.stderr.matches("remote cache").count(),
        1,
        "one warning: {}",
        r.stderr
    );
    assert_has(&r.stderr, "going on with the local cache only");
    s.stop();
    // A remote that is down from the start: the same.
    p.write(
        "hotpass.toml",
        &config.replace(&format!(" && kill -9 {pid}"), ""),
    );
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, summary) = machine(&p, &remote, "b", true, &[], &[]);
    r.code(0);
    assert_eq!(summary["counts"]["ran"], 2);
    assert_eq!(r.stderr.matches("remote cache").count(), 1, "{}", r.stderr);
}

/// Signed entries: a machine with another key (or none to check with)
/// refuses them and runs; the right key hits.
#[test]
fn a_wrong_signing_key_gives_misses() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let p = project();
    let key = [("HOTPASS_REMOTE_CACHE_KEY", "right")];
    machine(&p, &remote, "a", true, &key, &[]).0.code(0);
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let wrong = [("HOTPASS_REMOTE_CACHE_KEY", "wrong")];
    let (r, s1) = machine(&p, &remote, "b", false, &wrong, &[]);
    r.code(0);
    assert_eq!(s1["counts"]["ran"], 2);
    assert_has(&r.stderr, "signature does not match");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s2) = machine(&p, &remote, "c", false, &key, &[]);
    r.code(0);
    assert_eq!(s2["counts"]["cached"], 2, "{}", r.stderr);
}

/// An entry planted on the remote that would write outside the project is
/// refused, and nothing is written there.
#[test]
fn a_planted_remote_entry_cannot_escape() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let p = project();
    machine(&p, &remote, "a", true, &[], &["build"]).0.code(0);
    let entries = s.files().join("cache/v1/entries");
    let file = std::fs::read_dir(&entries)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    let (head, body) = text.split_once('\n').unwrap();
    let mut entry: serde_json::Value = serde_json::from_str(body).unwrap();
    entry["outputs"][0]["path"] = "../escaped.txt".into();
    std::fs::write(&file, format!("{head}\n{entry}")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s1) = machine(&p, &remote, "b", false, &[], &["build"]);
    r.code(0);
    assert_has(&r.stderr, "refused");
    assert_eq!(instance(&s1, "build")["status"], "ok");
    assert!(!p.root().parent().unwrap().join("escaped.txt").exists());
}

/// A run that stores more results than it keeps loose packs the rest: the
/// remote gets every blob all the same (read from the pack), and another
/// machine restores them all.
#[test]
fn packed_results_are_uploaded_and_shared() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let mut config = String::new();
    for i in 0..40 {
        config.push_str(&format!(
            "[tasks.t{i}]\nrun = \"mkdir -p out && cat in/{i} > out/{i}.txt && echo said-{i}\"\ninputs = [\"in/{i}\"]\noutputs = [\"out/{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&config);
    for i in 0..40 {
        p.write(&format!("in/{i}"), &format!("data-{i}\n"));
    }
    let (r, s) = machine(&p, &remote, "cache-a", true, &[], &[]);
    r.code(0);
    assert_eq!(s["remote_cache"]["uploads"], 40, "{}", r.stderr);
    assert!(
        std::fs::read_dir(p.path("cache-a/entries"))
            .unwrap()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "pack")),
        "the run packed some of its results"
    );
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let (r, s) = machine(&p, &remote, "cache-b", false, &[], &[]);
    r.code(0);
    assert_eq!(s["counts"]["cached"], 40, "{}{}", r.stdout, r.stderr);
    assert_eq!(s["remote_cache"]["hits"], 40);
    for i in 0..40 {
        assert_eq!(p.read(&format!("out/{i}.txt")), format!("data-{i}\n"));
        assert_has(&r.stdout, &format!("said-{i}"));
    }
}

/// `--shard 1/3` .. `3/3` on three fresh cache folders sharing a remote
/// run every instance exactly once: a shard restores what an earlier shard
/// pushed for its dependencies.
#[test]
fn shards_share_their_dependencies_through_the_remote() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let mut config = String::from(
        "[tasks.base]\nrun = \"mkdir -p out && echo base > out/base.txt\"\ninputs = [\"in\"]\noutputs = [\"out/base.txt\"]\n",
    );
    for i in 0..9 {
        config.push_str(&format!(
            "[tasks.t{i}]\ndeps = [\"base\"]\nrun = \"cat out/base.txt > out/t{i}.txt\"\ninputs = [\"in\", \"out/base.txt\"]\noutputs = [\"out/t{i}.txt\"]\n"
        ));
    }
    let p = Project::new(&config);
    p.write("in", "1\n");
    let mut ran = std::collections::BTreeMap::<String, usize>::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let cache = format!("cache-{k}");
        let (r, summary) = machine(&p, &remote, &cache, true, &[], &["--shard", &shard]);
        r.code(0);
        for i in summary["instances"].as_array().unwrap() {
            if i["status"] == "ok" {
                *ran.entry(i["name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(ran.len(), 10, "every instance ran: {ran:?}");
    assert!(ran.values().all(|n| *n == 1), "each exactly once: {ran:?}");
}

/// `explain` says whether the remote has the entry; the dry run counts a
/// remote entry as cached; `doctor` says the remote is reachable, and how
/// it is used.
#[test]
fn explain_and_the_dry_run_see_the_remote() {
    let Some(s) = nginx() else { return };
    let remote = Remote::webdav(&s);
    let p = project();
    machine(&p, &remote, "a", true, &[], &["build"]).0.code(0);
    let env = [
        ("HOTPASS_CACHE_DIR", "fresh"),
        ("HOTPASS_REMOTE_CACHE", remote.url.as_str()),
        ("TOKEN", "t0k3n"),
    ];
    let r = p.run_env(&["explain", "build"], &env);
    r.code(0);
    assert_has(&r.stdout, "remote cache has it");
    let r = p.run_env(&["run", "--dry-run=json", "build"], &env);
    r.code(0);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_has(&plan.to_string(), "cached");
    let r = p.run_env(&["doctor"], &env);
    assert_has(&r.stdout, "reachable, read-only (not CI)");
}

/// A server that answers every request with `500 Internal Server Error`
/// (a broken proxy in front of the cache): one warning, and the run is the
/// tasks' own.
#[test]
fn a_remote_answering_5xx_never_fails_a_build() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let server = std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = c.read(&mut buf);
                    let _ = c.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let p = project();
    let remote = Remote {
        url: format!("webdav+http://127.0.0.1:{port}/cache"),
        env: vec![],
    };
    let (r, summary) = machine(&p, &remote, "a", true, &[], &[]);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    r.code(0);
    assert_eq!(summary["counts"]["ran"], 2);
    assert_eq!(r.stderr.matches("remote cache").count(), 1, "{}", r.stderr);
}

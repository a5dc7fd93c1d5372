//! Services: long-running tasks whose dependents start once they are ready
//! (a log line, a TCP port, an HTTP 2xx), stopped when those are done, and
//! failures when they are not ready in time or exit by themselves.

use std::time::Duration;

use crate::support::{Project, assert_has, free_port, instance, wait_for};

fn refused(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// An HTTP server (Python's standard library) with an HTTP readiness
/// check: its dependent starts only once it answers, the run exits 0, and
/// no server is left behind.
#[test]
fn a_service_is_ready_before_its_dependent_and_stopped_after() {
    let port = free_port();
    let p = Project::new(&format!(
        "[tasks.web]\nservice = true\nrun = \"exec python3 -m http.server {port} --bind 127.0.0.1\"\n\
         ready = {{ http = \"http://127.0.0.1:{port}/\" }}\nready_timeout = \"30s\"\n\
         [gates.smoke]\ndeps = [\"web\"]\nrun = \"python3 -c 'import urllib.request; print(urllib.request.urlopen(\\\"http://127.0.0.1:{port}/\\\").status)'\"\n"
    ));
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_eq!(instance(&s, "gate:smoke")["status"], "ok");
    assert_eq!(instance(&s, "web")["status"], "ok");
    assert_has(&r.stdout, "gate:smoke | 200");
    assert!(
        wait_for(Duration::from_secs(5), || refused(port)),
        "the server outlived the run"
    );
}

/// Readiness by a log line; a dependent waits for it.
#[test]
fn a_log_line_makes_a_service_ready() {
    let p = Project::new(
        "[tasks.queue]\nservice = true\nrun = \"sleep 0.3; echo started > queue.up; echo listening now; exec sleep 300\"\n\
         ready = { log = \"^listening\" }\n\
         [tasks.consumer]\ndeps = [\"queue\"]\nrun = \"test -f queue.up && echo consumed > consumed\"\n",
    );
    let plan = p.run(&["run", "--dry-run=json"]);
    assert_has(&plan.stdout, "\"kind\": \"service\"");
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_eq!(p.read("consumed"), "consumed\n");
    assert_eq!(instance(&s, "queue")["status"], "ok");
}

/// A service that never becomes ready fails after ready_timeout, its output
/// shown; one that exits by itself is a failure; their dependents never run.
#[test]
fn a_service_not_ready_in_time_or_exiting_fails() {
    let port = free_port();
    let p = Project::new(&format!(
        "[tasks.db]\nservice = true\nrun = \"echo booting; exec sleep 300\"\nready = {{ tcp = {port} }}\nready_timeout = \"1s\"\n\
         [tasks.migrate]\ndeps = [\"db\"]\nrun = \"touch migrated\"\n"
    ));
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(1);
    assert_eq!(instance(&s, "db")["status"], "failed");
    assert_eq!(instance(&s, "migrate")["status"], "skipped");
    assert_has(&r.stdout, "booting");
    assert_has(&r.stdout, "was not ready after");
    assert!(!p.exists("migrated"));
    p.write(
        "hotpass.toml",
        "[tasks.crashy]\nservice = true\nrun = \"echo oops; exit 3\"\nready = { log = \"never\" }\n\
         [tasks.after]\ndeps = [\"crashy\"]\nrun = \"true\"\n",
    );
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(1);
    assert_eq!(instance(&s, "crashy")["status"], "failed");
    assert_has(&r.stdout, "exited by itself");
    // `ready` without `service = true` is a config error.
    p.write(
        "hotpass.toml",
        "[tasks.a]\nrun = \"true\"\nready = { tcp = 1 }\n",
    );
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "applies only to a service");
}

//! OpenLineage events, received by a collector on loopback started here
//! (a small HTTP server that records every body it is sent), and checked
//! against the specification's JSON schema by Python's `jsonschema`.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Project, assert_has};

/// An HTTP server on a free loopback port that answers 200 to every POST
/// and keeps its bodies; stopped when dropped.
pub struct Collector {
    pub url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    pub fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v1/lineage", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let b = b.clone();
                // A thread per connection: clients keep several open.
                std::thread::spawn(move || serve(c, &b));
            }
        });
        Collector {
            url,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    /// Every event received so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).expect("an event is JSON"))
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers 200 to each request on one connection, keeping the bodies.
fn serve(c: std::net::TcpStream, bodies: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(c);
    // Requests one after another on a kept-alive connection.
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        bodies
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        let _ = r
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
}

const TWO: &str = "[tasks.a]\nrun = \"mkdir -p out && cp in.txt out/a.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out/a.txt\"]\n\
    [tasks.b]\ndeps = [\"a\"]\nrun = \"cp out/a.txt out/b.txt\"\ninputs = [\"out/a.txt\"]\noutputs = [\"out/b.txt\"]\n";

/// Each job's event types, in the order they arrived (each run's events
/// arrive in order; different runs' may interleave).
fn kinds(events: &[serde_json::Value]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
    for e in events {
        out.entry(e["job"]["name"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["eventType"].as_str().unwrap().to_owned());
    }
    out
}

fn expect(pairs: &[(&str, &[&str])]) -> std::collections::BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(job, kinds)| {
            (
                job.to_string(),
                kinds.iter().map(|k| k.to_string()).collect(),
            )
        })
        .collect()
}

/// The event of `job` with type `kind`.
fn find<'a>(events: &'a [serde_json::Value], job: &str, kind: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["job"]["name"] == job && e["eventType"] == kind)
        .unwrap_or_else(|| panic!("no {kind} for {job}"))
}

/// Validates events with the OpenLineage schema (Python's `jsonschema`);
/// skipped with a reason where it is not installed, required in CI.
fn validate(p: &Project, events: &[serde_json::Value]) {
    if !crate::support::python_has("jsonschema, referencing", "jsonschema") {
        return;
    }
    let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
    p.write("events.jsonl", &lines);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openlineage/validate.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(p.path("events.jsonl"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two dependent tasks: a START and a COMPLETE each, under the run's own
/// events, linked by the parent facet, with their datasets; a second run
/// reports hits as COMPLETE with the cache facet; all valid per the schema.
#[test]
fn a_run_sends_start_and_complete_with_datasets_and_parent() {
    let c = Collector::start();
    let p = Project::new(TWO);
    p.write("in.txt", "x\n");
    let env = [("OPENLINEAGE_URL", ""), ("OPENLINEAGE_NAMESPACE", "team")];
    let config = format!("[settings.lineage]\nurl = \"{}\"\n{TWO}", c.url);
    p.write("hotpass.toml", &config);
    p.run_env(&["run"], &env).code(0);
    let events = c.events();
    assert_eq!(
        kinds(&events),
        expect(&[
            ("hotpass", &["START", "COMPLETE"]),
            ("a", &["START", "COMPLETE"]),
            ("b", &["START", "COMPLETE"]),
        ])
    );
    let run_id = find(&events, "hotpass", "START")["run"]["runId"]
        .as_str()
        .unwrap();
    for job in ["a", "b"] {
        for kind in ["START", "COMPLETE"] {
            let e = find(&events, job, kind);
            assert_eq!(e["job"]["namespace"], "team");
            assert_eq!(e["run"]["facets"]["parent"]["run"]["runId"], run_id);
            assert_ne!(e["run"]["runId"], run_id);
        }
    }
    let (a_start, a_done) = (find(&events, "a", "START"), find(&events, "a", "COMPLETE"));
    assert_eq!(a_start["run"]["runId"], a_done["run"]["runId"]);
    // a's output is b's input: the same dataset.
    let a_out = &a_done["outputs"][0]["name"];
    assert!(a_out.as_str().unwrap().ends_with("out/a.txt"), "{a_out}");
    assert_eq!(&find(&events, "b", "COMPLETE")["inputs"][0]["name"], a_out);
    assert_eq!(a_done["run"]["facets"]["hotpass"]["exitCode"], 0);
    assert!(a_done["run"]["facets"]["hotpass"]["cacheKey"].is_string());
    // The second run: hits.
    p.run_env(&["run"], &env).code(0);
    let second = &c.events()[6..];
    assert_eq!(
        find(second, "a", "COMPLETE")["run"]["facets"]["hotpass_cache"]["restoredFromCache"],
        true
    );
    validate(&p, &c.events());
}

/// A failing task sends FAIL (and the run FAIL); its dependent, skipped,
/// sends nothing.
#[test]
fn a_failure_sends_fail() {
    let c = Collector::start();
    let p = Project::new(&format!(
        "[settings.lineage]\nurl = \"{}\"\n[tasks.a]\nrun = \"exit 3\"\n[tasks.b]\ndeps = [\"a\"]\nrun = \"true\"\n",
        c.url
    ));
    p.run(&["run"]).code(1);
    let events = c.events();
    assert_eq!(
        kinds(&events),
        expect(&[("hotpass", &["START", "FAIL"]), ("a", &["START", "FAIL"])])
    );
    assert_eq!(
        find(&events, "a", "FAIL")["run"]["facets"]["hotpass"]["exitCode"],
        3
    );
    validate(&p, &events);
}

/// A collector that refuses connections changes nothing but one warning;
/// the file target writes JSON lines.
#[test]
fn a_collector_that_is_down_is_one_warning() {
    let port = crate::support::free_port();
    let p = Project::new("[tasks.a]\nrun = \"exit 0\"\n[tasks.b]\nrun = \"exit 4\"\n");
    let url = format!("http://127.0.0.1:{port}");
    let r = p.run_env(&["run", "--keep-going"], &[("OPENLINEAGE_URL", &url)]);
    r.code(1);
    assert_eq!(
        r.stderr.matches("lineage events").count(),
        1,
        "{}",
        r.stderr
    );
    let r = p.run_env(&["run", "a"], &[("OPENLINEAGE_URL", &url)]);
    r.code(0);
    p.write(
        "hotpass.toml",
        "[settings.lineage]\nfile = \"lineage/events.jsonl\"\n[tasks.a]\nrun = \"true\"\n",
    );
    p.run(&["run"]).code(0);
    let lines = p.read("lineage/events.jsonl");
    assert_eq!(lines.lines().count(), 4);
    assert_has(&lines, "\"eventType\":\"COMPLETE\"");
}

/// Every span in the OTLP/JSON payloads the collector received:
/// (name, traceId, spanId, parentSpanId, attributes).
fn spans(c: &Collector) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for payload in c.events() {
        for rs in payload["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// One trace per run under the caller's TRACEPARENT: a root span, a span
/// per instance under it with its phases as children, and each task sees
/// a TRACEPARENT naming its own span; a different trace parent changes no
/// key (the second run is all hits).
#[test]
fn a_run_exports_one_trace_with_a_span_per_instance() {
    let c = Collector::start();
    let base = c.url.trim_end_matches("/api/v1/lineage").to_owned();
    let p = Project::new(
        "[tasks.a]\nrun = \"echo $TRACEPARENT > tp.txt\"\ninputs = [\"in.txt\"]\n\
         [tasks.b]\ndeps = [\"a\"]\nrun = \"true\"\ninputs = [\"in.txt\"]\n",
    );
    p.write("in.txt", "x\n");
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        (
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    let r = p.run_env(&["run"], &env);
    r.code(0);
    let all = spans(&c);
    let root: Vec<_> = all
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("hotpass run"))
        .collect();
    assert_eq!(root.len(), 1, "{all:#?}");
    let root = root[0];
    assert_eq!(root["traceId"], caller_trace);
    assert_eq!(root["parentSpanId"], "00f067aa0ba902b7");
    let instance = |name: &str| {
        all.iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name}: {all:#?}"))
    };
    for name in ["a", "b"] {
        let s = instance(name);
        assert_eq!(s["traceId"], caller_trace);
        assert_eq!(s["parentSpanId"], root["spanId"]);
        assert_eq!(attr(s, "hotpass.exit_code").unwrap()["intValue"], "0");
        assert_eq!(attr(s, "hotpass.cached").unwrap()["boolValue"], false);
        let phases: Vec<_> = all
            .iter()
            .filter(|c| c["parentSpanId"] == s["spanId"])
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(
            phases.contains(&"hash") && phases.contains(&"run"),
            "{phases:?}"
        );
    }
    let tp = p.read("tp.txt");
    assert_eq!(
        tp.trim(),
        format!(
            "00-{caller_trace}-{}-01",
            instance("a")["spanId"].as_str().unwrap()
        )
    );
    // Another trace parent: the same keys, so every instance is a hit.
    let env2 = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        (
            "TRACEPARENT",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let (_, s) = p.run_summary(&["run"], &env2);
    assert_eq!(s["counts"]["cached"], 2, "{s}");
}

/// A collector that refuses connections: the exit code is the tasks' own,
/// with one warning.
#[test]
fn a_trace_collector_that_is_down_is_one_warning() {
    let port = crate::support::free_port();
    let p = Project::new("[tasks.a]\nrun = \"exit 5\"\n");
    let url = format!("http://127.0.0.1:{port}");
    let r = p.run_env(&["run"], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);
    r.code(1);
    assert_eq!(
        r.stderr.matches("traces could not").count(),
        1,
        "{}",
        r.stderr
    );
}

//! OpenLineage: a START and a COMPLETE, FAIL or ABORT event for every
//! instance that runs (a cache hit is a COMPLETE that says it was restored),
//! each linked by a parent-run facet to the hotpass run, which has events
//! of its own. Datasets are the declared inputs and outputs after
//! `{partition}` substitution.
//!
//! Events go to an HTTP endpoint (Marquez's `/api/v1/lineage`) or a file of
//! JSON lines, from a background thread with a bounded queue: a collector
//! that is down, slow or refusing is one warning and never changes the run.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::Reporter;
use crate::capture::Stream;
use crate::config::Project;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, Status};
use crate::warning::Warning;

/// The producer URI every event and facet carries.
pub const PRODUCER: &str = concat!(
    "https://github.com/hotpass/hotpass/tree/v",
    env!("CARGO_PKG_VERSION")
);
const SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const PARENT_SCHEMA: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const HOTPASS_SCHEMA: &str =
    "https://github.com/hotpass/hotpass/blob/main/docs/lineage.md#the-hotpass-run-facet";
/// Events waiting to be sent; past this, new ones are dropped (and said).
const QUEUE: usize = 4096;
/// How long one delivery may take, and how long the end of a run waits
/// for the queue to drain.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// POST each event as JSON, with a bearer token if given.
    Http {
        url: String,
        api_key: Option<String>,
    },
    /// Append each event as a line of JSON.
    File(std::path::PathBuf),
}

/// Where lineage goes for `project`, if anywhere: `[settings.lineage]`
/// first, then `OPENLINEAGE_URL` (+ `OPENLINEAGE_ENDPOINT`, default
/// `api/v1/lineage`), with `OPENLINEAGE_NAMESPACE` and `OPENLINEAGE_API_KEY`.
pub fn target(project: &Project) -> Option<(Target, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (url, file, namespace) = project.settings.lineage.clone().unwrap_or_default();
    let namespace = namespace
        .or_else(|| env("OPENLINEAGE_NAMESPACE"))
        .unwrap_or_else(|| "hotpass".into());
    let api_key = env("OPENLINEAGE_API_KEY");
    let target = if let Some(url) = url {
        Target::Http { url, api_key }
    } else if let Some(file) = file {
        Target::File(project.root.join(file))
    } else if let Some(base) = env("OPENLINEAGE_URL") {
        let endpoint = env("OPENLINEAGE_ENDPOINT").unwrap_or_else(|| "api/v1/lineage".into());
        Target::Http {
            url: format!(
                "{}/{}",
                base.trim_end_matches('/'),
                endpoint.trim_start_matches('/')
            ),
            api_key,
        }
    } else {
        return None;
    };
    Some((target, namespace))
}

/// Connections delivering events at once over HTTP; each run's events go
/// through one of them, so they arrive in order.
const SENDERS: usize = 8;

/// The delivery of one run's events.
pub struct Lineage {
    queues: Mutex<Vec<SyncSender<Value>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Why delivery failed, said once at the end.
    failed: Arc<Mutex<Option<String>>>,
    dropped: std::sync::atomic::AtomicUsize,
    shown: String,
    namespace: String,
    /// The hotpass run: the parent of every instance's run.
    run_id: String,
    job: String,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

type Client = Result<reqwest::blocking::Client, String>;

fn deliver(
    target: Target,
    client: Client,
    rx: Receiver<Value>,
    failed: Arc<Mutex<Option<String>>>,
) {
    let mut file = None;
    for event in rx {
        if failed.lock().expect("lineage state").is_some() {
            continue; // drain without sending: one warning is enough
        }
        let result: Result<(), String> = match &target {
            Target::Http { url, api_key } => match &client {
                Ok(c) => {
                    let mut req = c.post(url).header("content-type", "application/json");
                    if let Some(k) = api_key {
                        req = req.bearer_auth(k);
                    }
                    match req.body(event.to_string()).send() {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("{url} answered {}", r.status())),
                        Err(e) => Err(format!("{url}: {e}")),
                    }
                }
                Err(e) => Err(e.to_string()),
            },
            Target::File(path) => {
                if file.is_none() {
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    file = std::fs::File::options()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("{}: {e}", path.display()))
                        .map(|f| Some(std::io::BufWriter::new(f)))
                        .unwrap_or_else(|e| {
                            *failed.lock().expect("lineage state") = Some(e);
                            None
                        });
                }
                match file.as_mut() {
                    Some(f) => {
                        writeln!(f, "{event}").map_err(|e| format!("{}: {e}", path.display()))
                    }
                    None => continue,
                }
            }
        };
        if let Err(why) = result {
            *failed.lock().expect("lineage state") = Some(why);
        }
    }
    if let Some(mut f) = file
        && let Err(e) = f.flush()
    {
        *failed.lock().expect("lineage state") = Some(e.to_string());
    }
}

impl Lineage {
    /// Starts delivery to `target` and sends the hotpass run's START.
    pub fn start(target: Target, namespace: String, selection: &str) -> Arc<Lineage> {
        let failed = Arc::new(Mutex::new(None));
        let (shown, senders) = match &target {
            Target::Http { url, .. } => (url.clone(), SENDERS),
            // One writer keeps the file's lines whole.
            Target::File(p) => (p.display().to_string(), 1),
        };
        // One client (and its connection pool) for every sender.
        let client: Client = match &target {
            Target::Http { .. } => reqwest::blocking::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(TIMEOUT)
                .build()
                .map_err(|e| e.to_string()),
            Target::File(_) => Err("no HTTP".into()),
        };
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for _ in 0..senders {
            let (tx, rx) = sync_channel(QUEUE / senders);
            let (t, f, c) = (target.clone(), failed.clone(), client.clone());
            if let Ok(w) = std::thread::Builder::new()
                .name("hotpass-lineage".into())
                .spawn(move || deliver(t, c, rx, f))
            {
                queues.push(tx);
                workers.push(w);
            }
        }
        let l = Lineage {
            queues: Mutex::new(queues),
            workers: Mutex::new(workers),
            failed,
            dropped: Default::default(),
            shown,
            namespace,
            run_id: uuid::Uuid::now_v7().to_string(),
            job: if selection.is_empty() {
                "hotpass".into()
            } else {
                format!("hotpass {selection}")
            },
        };
        l.send(l.event("START", &l.run_id, &l.job, json!({}), vec![], vec![]));
        Arc::new(l)
    }

    fn send(&self, event: Value) {
        let queues = self.queues.lock().expect("lineage queue");
        // A run's events all take the same queue: they arrive in order.
        let run = event["run"]["runId"].as_str().unwrap_or("");
        let n = run
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        if let Some(tx) = queues.get(n % queues.len().max(1)) {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    fn event(
        &self,
        kind: &str,
        run_id: &str,
        job: &str,
        facets: Value,
        inputs: Vec<Value>,
        outputs: Vec<Value>,
    ) -> Value {
        json!({
            "eventType": kind,
            "eventTime": now(),
            "producer": PRODUCER,
            "schemaURL": SCHEMA,
            "run": { "runId": run_id, "facets": facets },
            "job": { "namespace": self.namespace, "name": job },
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// The hotpass run's end: COMPLETE, FAIL or ABORT; then waits (a
    /// bounded time) for delivery, and says once if it failed.
    pub fn finish(&self, failed: bool, interrupted: bool) {
        let kind = if interrupted {
            "ABORT"
        } else if failed {
            "FAIL"
        } else {
            "COMPLETE"
        };
        self.send(self.event(kind, &self.run_id, &self.job, json!({}), vec![], vec![]));
        self.queues.lock().expect("lineage queue").clear();
        let workers = std::mem::take(&mut *self.workers.lock().expect("lineage worker"));
        let done = std::time::Instant::now() + TIMEOUT * 2;
        while workers.iter().any(|w| !w.is_finished()) && std::time::Instant::now() < done {
            std::thread::sleep(Duration::from_millis(2));
        }
        for w in workers {
            if w.is_finished() {
                let _ = w.join();
            } else {
                self.failed
                    .lock()
                    .expect("lineage state")
                    .get_or_insert_with(|| "delivery timed out".into());
            }
        }
        let dropped = self.dropped.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(why) = self.failed.lock().expect("lineage state").take() {
            Warning::LineageFailed {
                target: self.shown.clone(),
                why,
            }
            .emit();
        } else if dropped > 0 {
            Warning::LineageFailed {
                target: self.shown.clone(),
                why: format!("{dropped} events did not fit the queue"),
            }
            .emit();
        }
    }
}

/// Sends an instance's events as the scheduler reports it.
pub struct LineageReporter<'a> {
    lineage: Arc<Lineage>,
    project: &'a Project,
    graph: &'a InstanceGraph,
    /// Each started instance's run id.
    runs: Vec<Option<String>>,
}

impl<'a> LineageReporter<'a> {
    pub fn new(lineage: Arc<Lineage>, project: &'a Project, graph: &'a InstanceGraph) -> Self {
        LineageReporter {
            lineage,
            project,
            graph,
            runs: vec![None; graph.len()],
        }
    }

    fn datasets(&self, id: InstanceId) -> (Vec<Value>, Vec<Value>) {
        let r = &self.graph.get(id).resolved;
        let dataset = |glob: &str| {
            let path = if std::path::Path::new(glob).is_absolute() {
                std::path::PathBuf::from(glob)
            } else {
                r.cwd.join(glob)
            };
            json!({ "namespace": "file", "name": path.display().to_string() })
        };
        let inputs = r
            .input_globs
            .iter()
            .filter(|g| !g.starts_with('!'))
            .map(|g| dataset(g))
            .collect();
        let outputs = r.outputs.iter().map(|g| dataset(g)).collect();
        (inputs, outputs)
    }

    fn facets(&self, id: InstanceId, outcome: Option<&Outcome>) -> Value {
        let inst = self.graph.get(id);
        let mut hotpass = json!({
            "_producer": PRODUCER,
            "_schemaURL": HOTPASS_SCHEMA,
            "instance": inst.name,
            "partition": inst.partition,
        });
        if let Some(o) = outcome {
            let extra = json!({
                "cacheKey": o.key,
                "cached": o.status == Status::Cached,
                "exitCode": match o.status {
                    Status::Ok | Status::Cached => Some(0),
                    Status::Failed { code } => code,
                    _ => None,
                },
                "durationMs": o.duration.as_millis() as u64,
            });
            if let (Some(h), Some(e)) = (hotpass.as_object_mut(), extra.as_object()) {
                h.extend(e.clone());
            }
        }
        let mut facets = json!({
            "parent": {
                "_producer": PRODUCER,
                "_schemaURL": PARENT_SCHEMA,
                "run": { "runId": self.lineage.run_id },
                "job": { "namespace": self.lineage.namespace, "name": self.lineage.job },
            },
            "hotpass": hotpass,
        });
        if let Some(o) = outcome.filter(|o| o.status == Status::Cached) {
            facets["hotpass_cache"] = json!({
                "_producer": PRODUCER,
                "_schemaURL": HOTPASS_SCHEMA,
                "restoredFromCache": true,
                "cacheKey": o.key,
                "originalDurationMs": o.saved.map(|d| d.as_millis() as u64),
            });
        }
        facets
    }
}

impl Reporter for LineageReporter<'_> {
    fn started(&mut self, id: InstanceId) {
        let run_id = uuid::Uuid::now_v7().to_string();
        let task = &self.project.task(self.graph.get(id).task).name;
        let (inputs, outputs) = self.datasets(id);
        let event = self.lineage.event(
            "START",
            &run_id,
            task,
            self.facets(id, None),
            inputs,
            outputs,
        );
        self.lineage.send(event);
        self.runs[id.index()] = Some(run_id);
    }

    fn output(&mut self, _id: InstanceId, _stream: Stream, _line: &[u8]) {}

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        // An instance that never started (skipped) has no run.
        let Some(run_id) = self.runs[id.index()].take() else {
            return;
        };
        let kind = match outcome.status {
            Status::Ok | Status::Cached => "COMPLETE",
            Status::Failed { .. } | Status::TimedOut => "FAIL",
            Status::Interrupted | Status::Skipped { .. } => "ABORT",
        };
        let task = &self.project.task(self.graph.get(id).task).name;
        let (inputs, outputs) = self.datasets(id);
        let event = self.lineage.event(
            kind,
            &run_id,
            task,
            self.facets(id, Some(outcome)),
            inputs,
            outputs,
        );
        self.lineage.send(event);
    }
}

//! `--profile FILE`: the run as Chrome trace-event JSON (opens in Perfetto
//! and chrome://tracing): one complete event per instance on the lane of the
//! worker that ran it, with its hashing, restore, run and store phases inside.

use serde_json::{Value, json};

use crate::graph::InstanceGraph;
use crate::outcome::RunResult;

/// The trace-event JSON of a finished run.
pub fn render(graph: &InstanceGraph, result: &RunResult) -> String {
    let us = |t: std::time::Instant| t.saturating_duration_since(result.begin).as_secs_f64() * 1e6;
    let mut events: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": { "name": "hotpass run" }
    })];
    let mut lanes = std::collections::BTreeSet::new();
    for (id, inst) in graph.iter() {
        let o = &result.outcomes[id.index()];
        let Some((lane, start, end)) = o.lane else {
            continue;
        };
        lanes.insert(lane);
        events.push(json!({
            "name": inst.name, "cat": "instance", "ph": "X", "pid": 1, "tid": lane + 1,
            "ts": us(start), "dur": (us(end) - us(start)).max(0.0),
            "args": { "status": o.status.word(), "key": o.key, "reason": o.reason }
        }));
        for s in &o.spans {
            events.push(json!({
                "name": s.name, "cat": "phase", "ph": "X", "pid": 1, "tid": lane + 1,
                "ts": us(s.start), "dur": (us(s.end) - us(s.start)).max(0.0),
                "args": { "instance": inst.name }
            }));
        }
    }
    for lane in lanes {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": lane + 1,
            "args": { "name": format!("worker {}", lane + 1) }
        }));
    }
    serde_json::to_string(&json!({ "traceEvents": events, "displayTimeUnit": "ms" }))
        .expect("trace serialises")
}

//! `--junit FILE`: JUnit XML with one test case per instance; tasks and gates
//! in their own suites; failures carry the instance's output.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::config::{Project, TaskKind};
use crate::graph::InstanceGraph;
use crate::outcome::RunResult;
use crate::outcome::{Outcome, Status};

/// How much of an instance's output a report keeps: its last MiB.
const KEEP: usize = 1 << 20;

fn output_text(o: &Outcome) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut keep_tail = |bytes: &mut Vec<u8>| {
        if bytes.len() > KEEP {
            let cut = bytes.len() - KEEP;
            dropped += cut;
            bytes.drain(..cut);
        }
    };
    let _ = o.output.for_each(&mut |_, data| {
        bytes.extend_from_slice(data);
        if bytes.len() > 2 * KEEP {
            keep_tail(&mut bytes);
        }
    });
    keep_tail(&mut bytes);
    if dropped > 0 {
        let mut note = format!("… {dropped} earlier bytes left out\n").into_bytes();
        note.append(&mut bytes);
        bytes = note;
    }
    // No terminal escapes; and XML 1.0 cannot hold most control characters:
    // keep tabs and newlines.
    String::from_utf8_lossy(&super::plain(&bytes))
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .collect()
}

/// The JUnit XML of a finished run.
pub fn render(project: &Project, graph: &InstanceGraph, result: &RunResult) -> String {
    let mut tasks = TestSuite::new("tasks");
    let mut gates = TestSuite::new("gates");
    for &id in graph.order() {
        let inst = graph.get(id);
        let o = &result.outcomes[id.index()];
        let task = project.task(inst.task);
        let status = match &o.status {
            Status::Ok | Status::Cached => TestCaseStatus::success(),
            Status::Skipped { reason } => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(reason.clone());
                s
            }
            Status::Interrupted => {
                // Not the gate's verdict: the run was stopped under it.
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message("interrupted");
                s.set_type("interrupted");
                s.set_description(output_text(o));
                s
            }
            other => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(match other {
                    Status::Failed { code: Some(c) } => format!("exit code {c}"),
                    Status::Failed { code: None } => "killed by a signal".to_owned(),
                    Status::TimedOut => "timed out".to_owned(),
                    _ => "interrupted".to_owned(),
                });
                s.set_type(other.word());
                s.set_description(output_text(o));
                s
            }
        };
        let mut case = TestCase::new(inst.name.clone(), status);
        case.set_classname(format!(
            "hotpass.{}",
            if task.kind == TaskKind::Gate {
                "gates"
            } else {
                "tasks"
            }
        ));
        case.set_time(o.duration);
        case.add_property(Property::new("status", o.status.word()));
        if let Some(r) = &o.reason {
            case.add_property(Property::new("reason", r.to_string()));
        }
        if o.status.is_success() && !o.output.is_empty() {
            case.set_system_out(output_text(o));
        }
        match task.kind {
            TaskKind::Gate => gates.add_test_case(case),
            TaskKind::Task => tasks.add_test_case(case),
        };
    }
    let mut report = Report::new("hotpass");
    report.set_time(result.elapsed);
    report.add_test_suites([tasks, gates]);
    report.to_string().expect("JUnit XML serialises")
}

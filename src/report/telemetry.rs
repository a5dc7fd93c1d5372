//! OpenTelemetry: one trace per run, exported over OTLP/HTTP — a root span
//! for the run, a span per instance (cached or ran, exit code, duration)
//! with child spans for its phases (hashing, restoring, running, storing).
//! A `TRACEPARENT` in hotpass's environment makes the run a child of the
//! caller's trace, and each task gets a `TRACEPARENT` naming its own span,
//! so a task's own instrumentation nests under it. Neither is part of any
//! cache key.
//!
//! Spans are exported by the SDK's batch processor on its own thread; a
//! collector that is down or refusing is one warning at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status as SpanStatus, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{IdGenerator, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};

use super::Reporter;
use crate::capture::Stream;
use crate::config::Project;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{Outcome, Status};
use crate::warning::Warning;

/// How long one export may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where traces go, if anywhere: `[settings.telemetry] endpoint` (an OTLP
/// base URL), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the base); and the service name.
pub fn endpoint(project: &Project) -> Option<(String, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (configured, service) = project.settings.telemetry.clone().unwrap_or_default();
    let traces = |base: String| format!("{}/v1/traces", base.trim_end_matches('/'));
    let url = configured
        .map(traces)
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(traces))?;
    let service = service
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "hotpass".into());
    Some((url, service))
}

/// A W3C `traceparent`: version 00, trace id, parent span id, flags.
fn parse_traceparent(s: &str) -> Option<SpanContext> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    if version.len() != 2 || *version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = getrandom::fill(&mut b);
    if b.iter().all(|x| *x == 0) {
        b[N - 1] = 1;
    }
    b
}

/// Ids the run chose in advance: its trace id (so tasks can be told it
/// before any span exists) and, slot by slot, the id of the next span.
#[derive(Debug, Clone)]
struct Ids {
    trace: TraceId,
    next_span: Arc<Mutex<Option<SpanId>>>,
}

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        self.trace
    }
    fn new_span_id(&self) -> SpanId {
        self.next_span
            .lock()
            .expect("span id slot")
            .take()
            .unwrap_or_else(|| SpanId::from_bytes(random()))
    }
}

/// The OTLP exporter, remembering why an export failed (the SDK only logs it).
#[derive(Debug)]
struct Exporter {
    inner: opentelemetry_otlp::SpanExporter,
    failed: Arc<Mutex<Option<String>>>,
}

impl SpanExporter for Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let r = self.inner.export(batch).await;
        if let Err(e) = &r {
            self.failed
                .lock()
                .expect("export state")
                .get_or_insert_with(|| e.to_string());
        }
        r
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// One run's trace.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ids: Ids,
    /// Each instance's span id, chosen before it runs.
    instance_ids: Vec<SpanId>,
    /// The root span's context: every instance span's parent.
    root: Mutex<Option<Context>>,
    failed: Arc<Mutex<Option<String>>>,
    url: String,
    /// When the run began, on both clocks.
    began: (Instant, SystemTime),
}

impl Telemetry {
    /// Starts the run's trace (under `TRACEPARENT` when set) for a graph of
    /// `instances`; `None`, with a warning, when no exporter can be made.
    pub fn start(
        url: String,
        service: String,
        instances: usize,
        what: &str,
    ) -> Option<Arc<Telemetry>> {
        let parent = std::env::var("TRACEPARENT")
            .ok()
            .and_then(|t| parse_traceparent(&t));
        let ids = Ids {
            trace: parent
                .as_ref()
                .map_or_else(|| TraceId::from_bytes(random()), |p| p.trace_id()),
            next_span: Arc::default(),
        };
        let failed = Arc::new(Mutex::new(None));
        let inner = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(TIMEOUT)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                Warning::TelemetryFailed {
                    endpoint: url,
                    why: e.to_string(),
                }
                .emit();
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Exporter {
                inner,
                failed: failed.clone(),
            })
            .with_id_generator(ids.clone())
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("hotpass");
        let parent_cx = match parent {
            Some(p) => Context::new().with_remote_span_context(p),
            None => Context::new(),
        };
        let began = (Instant::now(), SystemTime::now());
        let root = tracer
            .span_builder(if what.is_empty() {
                "hotpass run".to_owned()
            } else {
                format!("hotpass run {what}")
            })
            .with_start_time(began.1)
            .start_with_context(&tracer, &parent_cx);
        let root = parent_cx.with_span(root);
        Some(Arc::new(Telemetry {
            provider,
            tracer,
            instance_ids: (0..instances)
                .map(|_| SpanId::from_bytes(random()))
                .collect(),
            ids,
            root: Mutex::new(Some(root)),
            failed,
            url,
            began,
        }))
    }

    /// The `TRACEPARENT` a task of instance `id` gets: its own span.
    pub fn traceparent(&self, id: InstanceId) -> String {
        format!("00-{}-{}-01", self.ids.trace, self.instance_ids[id.index()])
    }

    fn at(&self, t: Instant) -> SystemTime {
        self.began.1 + t.saturating_duration_since(self.began.0)
    }

    /// Ends the run's span (an error when it failed), exports what is
    /// left, and says once if exporting failed.
    pub fn finish(&self, failed: bool, interrupted: bool) {
        if let Some(root) = self.root.lock().expect("root span").take() {
            let span = root.span();
            if failed || interrupted {
                span.set_status(SpanStatus::error(if interrupted {
                    "interrupted"
                } else {
                    "a task failed"
                }));
            }
            span.end();
        }
        let flushed = self.provider.force_flush();
        let _ = self.provider.shutdown_with_timeout(TIMEOUT);
        let why = self
            .failed
            .lock()
            .expect("export state")
            .take()
            .or_else(|| flushed.err().map(|e| e.to_string()));
        if let Some(why) = why {
            Warning::TelemetryFailed {
                endpoint: self.url.clone(),
                why,
            }
            .emit();
        }
    }
}

/// Adds a span per finished instance.
pub struct TelemetryReporter<'a> {
    telemetry: Arc<Telemetry>,
    project: &'a Project,
    graph: &'a InstanceGraph,
}

impl<'a> TelemetryReporter<'a> {
    pub fn new(telemetry: Arc<Telemetry>, project: &'a Project, graph: &'a InstanceGraph) -> Self {
        TelemetryReporter {
            telemetry,
            project,
            graph,
        }
    }
}

impl Reporter for TelemetryReporter<'_> {
    fn started(&mut self, _id: InstanceId) {}

    fn output(&mut self, _id: InstanceId, _stream: Stream, _line: &[u8]) {}

    fn finished(&mut self, id: InstanceId, outcome: &Outcome) {
        // An instance that never started (skipped) has no span.
        let Some((_, began, ended)) = outcome.lane else {
            return;
        };
        let t = &self.telemetry;
        let Some(root) = t.root.lock().expect("root span").clone() else {
            return;
        };
        let inst = self.graph.get(id);
        let mut attrs = vec![
            KeyValue::new("hotpass.instance", inst.name.clone()),
            KeyValue::new("hotpass.task", self.project.task(inst.task).name.clone()),
            KeyValue::new("hotpass.status", outcome.status.word()),
            KeyValue::new("hotpass.cached", outcome.status == Status::Cached),
            KeyValue::new("hotpass.duration_ms", outcome.duration.as_millis() as i64),
        ];
        if let Some(p) = &inst.partition {
            attrs.push(KeyValue::new("hotpass.partition", p.clone()));
        }
        if let Some(k) = &outcome.key {
            attrs.push(KeyValue::new("hotpass.cache_key", k.clone()));
        }
        let code = match outcome.status {
            Status::Ok | Status::Cached => Some(0),
            Status::Failed { code } => code,
            _ => None,
        };
        if let Some(c) = code {
            attrs.push(KeyValue::new("hotpass.exit_code", i64::from(c)));
        }
        *t.ids.next_span.lock().expect("span id slot") = Some(t.instance_ids[id.index()]);
        let mut span = t
            .tracer
            .span_builder(inst.name.clone())
            .with_start_time(t.at(began))
            .with_attributes(attrs)
            .start_with_context(&t.tracer, &root);
        if outcome.status.is_failure() {
            span.set_status(SpanStatus::error(outcome.status.word()));
        }
        let cx = root.with_span(span);
        for phase in &outcome.spans {
            let mut child = t
                .tracer
                .span_builder(phase.name)
                .with_start_time(t.at(phase.start))
                .start_with_context(&t.tracer, &cx);
            child.end_with_timestamp(t.at(phase.end));
        }
        cx.span().end_with_timestamp(t.at(ended));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_strictly() {
        let p =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id().to_string(), "00f067aa0ba902b7");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none()
        );
        assert!(
            parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }
}

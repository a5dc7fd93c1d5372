//! `hotpass list [--json]`: every task and gate with its description.

use serde::Serialize;

use crate::Context;
use crate::config;
use crate::error::Error;
use crate::partition::PartitionSpec;

#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    kind: &'static str,
    description: Option<&'a str>,
    deps: Vec<&'a str>,
    partitions: Option<String>,
    cached: bool,
}

/// Prints the list.
pub fn run(ctx: &Context, json: bool) -> Result<u8, Error> {
    let project = config::load(&ctx.load)?;
    let entries: Vec<Entry> = project
        .tasks
        .iter()
        .map(|t| Entry {
            name: &t.name,
            kind: t.kind_word(),
            description: t.description.as_deref(),
            deps: t
                .deps
                .iter()
                .map(|d| project.task(*d).name.as_str())
                .collect(),
            partitions: t.partitions.as_ref().map(|p| match p {
                PartitionSpec::Hourly { zone, .. } => format!("hourly ({})", zone.name),
                PartitionSpec::Daily { .. } => "daily".to_owned(),
                PartitionSpec::Monthly { .. } => "monthly".to_owned(),
                PartitionSpec::Files(glob) => format!("files: {glob}"),
                PartitionSpec::Values(v) => format!("values: {}", v.join(", ")),
            }),
            cached: t.cache,
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).expect("serialisable")
        );
        return Ok(0);
    }
    // Capped: a column as wide as the longest name is unreadable past this,
    // and a format width must stay small.
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for e in &entries {
        let mut line = format!("{:<width$}  {}", e.name, e.description.unwrap_or(""));
        if let Some(p) = &e.partitions {
            line.push_str(&format!("  [{p}]"));
        }
        println!("{}", line.trim_end());
    }
    Ok(0)
}

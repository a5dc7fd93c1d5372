//! `hotpass graph`: the instance graph of a selection as dot, mermaid or JSON.

use serde::Serialize;

use super::start::{self, Selection};
use crate::Context;
use crate::cli::{GraphFormat, PartitionFlags};
use crate::config::TaskKind;
use crate::error::Error;

#[derive(Serialize)]
struct Node<'a> {
    name: &'a str,
    task: &'a str,
    partition: Option<&'a str>,
    kind: &'static str,
    description: Option<&'a str>,
    deps: Vec<&'a str>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Prints the graph.
pub fn run(
    ctx: &Context,
    selectors: &[String],
    format: GraphFormat,
    flags: &PartitionFlags,
) -> Result<u8, Error> {
    let start::Session { project, graph } = start::session(
        ctx,
        &Selection {
            selectors,
            partitions: flags,
            shard: None,
            guardrail: false,
        },
    )?;
    let order = graph.order();
    match format {
        GraphFormat::Json => {
            let nodes: Vec<Node> = order
                .iter()
                .map(|id| {
                    let i = graph.get(*id);
                    let t = project.task(i.task);
                    Node {
                        name: &i.name,
                        task: &t.name,
                        partition: i.partition.as_deref(),
                        kind: t.kind_word(),
                        description: t.description.as_deref(),
                        deps: i.deps.iter().map(|d| graph.get(*d).name.as_str()).collect(),
                    }
                })
                .collect();
            let edges: Vec<serde_json::Value> = order
                .iter()
                .flat_map(|id| {
                    let i = graph.get(*id);
                    i.deps
                        .iter()
                        .map(|d| serde_json::json!({"from": graph.get(*d).name, "to": i.name}))
                })
                .collect();
            let doc = serde_json::json!({ "nodes": nodes, "edges": edges });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("serialisable")
            );
        }
        GraphFormat::Dot => {
            println!("digraph hotpass {{");
            println!("  rankdir=LR;");
            for id in order {
                let i = graph.get(*id);
                let shape = if project.task(i.task).kind == TaskKind::Gate {
                    "diamond"
                } else {
                    "box"
                };
                println!("  {} [shape={shape}];", quote(&i.name));
            }
            for id in order {
                let i = graph.get(*id);
                for d in &i.deps {
                    println!("  {} -> {};", quote(&graph.get(*d).name), quote(&i.name));
                }
            }
            println!("}}");
        }
        GraphFormat::Mermaid => {
            println!("graph LR");
            let ids: std::collections::HashMap<_, _> = order
                .iter()
                .enumerate()
                .map(|(n, id)| (*id, format!("n{n}")))
                .collect();
            for id in order {
                let i = graph.get(*id);
                let label = i.name.replace('"', "#quot;");
                if project.task(i.task).kind == TaskKind::Gate {
                    println!("  {}{{\"{label}\"}}", ids[id]);
                } else {
                    println!("  {}[\"{label}\"]", ids[id]);
                }
            }
            for id in order {
                for d in &graph.get(*id).deps {
                    println!("  {} --> {}", ids[d], ids[id]);
                }
            }
        }
    }
    Ok(0)
}

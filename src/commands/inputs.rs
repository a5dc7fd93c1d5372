//! `hotpass inputs TASK[@P]`: exactly what the instance's cache key covers —
//! each file under the glob that matched it, the `$NAME` inputs (names only,
//! never values), the tools and the dependencies' results.

use serde::Serialize;

use super::start;
use crate::Context;
use crate::error::Error;
use crate::report::out;

/// The JSON of `hotpass inputs --json`.
#[derive(Debug, Serialize)]
struct Inputs {
    instance: String,
    key: Option<String>,
    cwd: String,
    globs: Vec<GlobFiles>,
    env: Vec<EnvInput>,
    tools: Vec<ToolInput>,
    deps: Vec<DepInput>,
    outputs: Vec<String>,
}

#[derive(Debug, Serialize)]
struct GlobFiles {
    glob: String,
    files: Vec<FileInput>,
}

#[derive(Debug, Serialize)]
struct FileInput {
    path: String,
    size: u64,
    hash: String,
}

#[derive(Debug, Serialize)]
struct EnvInput {
    name: String,
    set: bool,
}

#[derive(Debug, Serialize)]
struct ToolInput {
    name: String,
    /// Where it was found on this machine (not part of the key).
    path: Option<String>,
    hash: Option<String>,
}

#[derive(Debug, Serialize)]
struct DepInput {
    name: String,
    /// The digest of its result that the key takes.
    result: Option<String>,
}

/// Prints what the key of `instance` covers.
pub fn run(ctx: &Context, instance: &str, json: bool) -> Result<u8, Error> {
    let start::Planned {
        graph,
        target,
        cache,
        plan: planned,
        ..
    } = start::planned(ctx, instance)?;
    let item = planned.item(target).expect("the target is planned");
    let inst = graph.get(target);
    let scan = cache
        .scan(inst, true)
        .map_err(|e| Error::io(format!("hashing the inputs of {instance}"), e))?;
    let r = &inst.resolved;
    let mut globs: Vec<GlobFiles> = r
        .input_globs
        .iter()
        .filter(|g| !g.starts_with('!'))
        .map(|g| GlobFiles {
            glob: g.clone(),
            files: Vec::new(),
        })
        .collect();
    let positions: Vec<usize> = (0..r.input_globs.len())
        .filter(|i| !r.input_globs[*i].starts_with('!'))
        .collect();
    for ((f, h), by) in scan.files.iter().zip(&scan.hashes).zip(&scan.matched_by) {
        let Some(slot) = by.and_then(|n| positions.iter().position(|p| *p == n)) else {
            continue;
        };
        globs[slot].files.push(FileInput {
            path: f.rel.clone(),
            size: f.meta.len(),
            hash: crate::hash::hex(h),
        });
    }
    let report = Inputs {
        instance: inst.name.clone(),
        key: item.key.clone(),
        cwd: r.cwd_rel.clone(),
        globs,
        env: r
            .env_inputs
            .iter()
            .map(|n| EnvInput {
                name: n.clone(),
                set: std::env::var_os(n).is_some(),
            })
            .collect(),
        tools: scan
            .tools
            .into_iter()
            .map(|(name, t)| ToolInput {
                name,
                path: t.as_ref().map(|t| t.path.display().to_string()),
                hash: t.map(|t| t.hash.clone()),
            })
            .collect(),
        deps: item
            .full_key
            .as_ref()
            .map(|k| {
                k.deps
                    .iter()
                    .map(|(name, result)| DepInput {
                        name: name.clone(),
                        result: Some(result.clone()),
                    })
                    .collect()
            })
            .unwrap_or_else(|| {
                item.deps
                    .iter()
                    .map(|name| DepInput {
                        name: name.clone(),
                        result: None,
                    })
                    .collect()
            }),
        outputs: r.outputs.clone(),
    };
    if json {
        out(format!(
            "{}\n",
            serde_json::to_string_pretty(&report).expect("serialisable")
        )
        .as_bytes());
    } else {
        out(render(&report).as_bytes());
    }
    Ok(0)
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}

fn render(i: &Inputs) -> String {
    let mut s = format!("{}\n", i.instance);
    s.push_str(&format!(
        "  key: {}\n",
        i.key.as_deref().map(short).unwrap_or("- (not computed)")
    ));
    if i.cwd != "." {
        s.push_str(&format!("  cwd: {}\n", i.cwd));
    }
    let files: usize = i.globs.iter().map(|g| g.files.len()).sum();
    s.push_str(&format!("  files: {files}\n"));
    for g in &i.globs {
        match g.files.len() {
            0 => s.push_str(&format!("    {}: matches no file\n", g.glob)),
            n => s.push_str(&format!(
                "    {}: {n} file{}\n",
                g.glob,
                if n == 1 { "" } else { "s" }
            )),
        }
        for f in &g.files {
            s.push_str(&format!(
                "      {}  {} B  {}\n",
                f.path,
                f.size,
                short(&f.hash)
            ));
        }
    }
    if !i.env.is_empty() {
        s.push_str("  env (values never shown):\n");
        for e in &i.env {
            let state = if e.set { "set" } else { "unset" };
            s.push_str(&format!("    ${}  {state}\n", e.name));
        }
    }
    if !i.tools.is_empty() {
        s.push_str("  tools:\n");
        for t in &i.tools {
            match (&t.hash, &t.path) {
                (Some(h), Some(p)) => s.push_str(&format!("    {}  {}  {p}\n", t.name, short(h))),
                _ => s.push_str(&format!("    {}  not found\n", t.name)),
            }
        }
    }
    if !i.deps.is_empty() {
        s.push_str("  deps (the digest of each one's result):\n");
        for d in &i.deps {
            s.push_str(&format!(
                "    {}  {}\n",
                d.name,
                d.result.as_deref().map(short).unwrap_or("unknown")
            ));
        }
    }
    if !i.outputs.is_empty() {
        s.push_str(&format!("  outputs: {}\n", i.outputs.join(", ")));
    }
    s
}

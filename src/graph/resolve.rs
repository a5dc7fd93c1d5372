//! Resolving an instance once, when the graph is built: its commands, cwd,
//! env, input globs, `$NAME` inputs and outputs with `{partition}`
//! substituted. Everything later (the key, the runner, watch mode, the dry
//! run) reads this instead of the task's templates.

use std::path::{Path, PathBuf};

use crate::config::{EnvMode, Input, Task, Tools};

/// An instance's task, with its partition filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Shell commands, run in turn.
    pub commands: Vec<String>,
    /// The folder the commands run in, relative to the root (`.` for the root).
    pub cwd_rel: String,
    /// The same folder, absolute.
    pub cwd: PathBuf,
    /// The task's `env` table, then `HOTPASS_PARTITION` for a partitioned
    /// instance: set for the commands and covered by the key.
    pub env: Vec<(String, String)>,
    /// Input globs, relative to the cwd (`!` excludes).
    pub input_globs: Vec<String>,
    /// Names of `$NAME` inputs.
    pub env_inputs: Vec<String>,
    /// Output globs, relative to the cwd.
    pub outputs: Vec<String>,
    /// Programs whose identity is in the key: plain names are looked up on
    /// PATH, names with a `/` relative to the cwd. Sorted, without repeats.
    pub tools: Vec<String>,
    /// With `env_mode = "strict"`, the `pass_env` globs: the commands see
    /// only the base set, `env`, the `$NAME` inputs and these. `None`: loose.
    pub pass_env: Option<Vec<String>>,
    /// Whether the commands may be asked for colour (`color`; not in the key).
    pub color: bool,
}

/// Substitutes `{partition}` in a config string.
fn substitute(s: &str, partition: Option<&str>) -> String {
    match partition {
        Some(p) => s.replace("{partition}", p),
        None => s.to_owned(),
    }
}

impl Resolved {
    /// Resolves `task` on `partition` for a project rooted at `root`.
    pub fn new(root: &Path, task: &Task, partition: Option<&str>, env_mode: EnvMode) -> Resolved {
        let sub = |s: &String| substitute(s, partition);
        let cwd_rel = sub(&task.cwd);
        let cwd = if cwd_rel == "." {
            root.to_path_buf()
        } else {
            root.join(&cwd_rel)
        };
        let mut env: Vec<(String, String)> =
            task.env.iter().map(|(k, v)| (k.clone(), sub(v))).collect();
        if let Some(p) = partition {
            env.push(("HOTPASS_PARTITION".into(), p.to_owned()));
        }
        let mut input_globs = Vec::new();
        let mut env_inputs = Vec::new();
        for input in &task.inputs {
            match input {
                Input::Glob(g) => input_globs.push(sub(g)),
                Input::Env(name) => env_inputs.push(name.clone()),
            }
        }
        let commands: Vec<String> = task.run.iter().map(sub).collect();
        let tools = match &task.tools {
            Tools::Off => Vec::new(),
            Tools::Auto { commands, extra } if extra.is_empty() => commands.clone(),
            Tools::Auto { commands, extra } => {
                let mut t = commands.clone();
                t.extend(extra.iter().map(sub));
                t.sort();
                t.dedup();
                t
            }
        };
        Resolved {
            commands,
            cwd_rel,
            cwd,
            env,
            input_globs,
            env_inputs,
            outputs: task.outputs.iter().map(sub).collect(),
            tools,
            pass_env: (env_mode == EnvMode::Strict).then(|| task.pass_env.clone()),
            color: task.color,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_the_partition_everywhere_once() {
        let task = Task {
            id: crate::config::TaskId(0),
            name: "p:ingest".into(),
            kind: crate::config::TaskKind::Task,
            description: None,
            run: vec!["ingest {partition}".into()],
            deps: vec![],
            inputs: vec![
                Input::parse("raw/{partition}/*.csv"),
                Input::parse("$TOKEN"),
            ],
            input_spans: vec![0..0, 0..0],
            outputs: vec!["out/{partition}.csv".into()],
            output_spans: vec![std::ops::Range { start: 0, end: 0 }],
            tools: Tools::Auto {
                commands: vec!["ingest".into()],
                extra: vec!["bin/{partition}".into()],
            },
            pass_env: vec![],
            color: true,
            env: [("DAY".to_owned(), "{partition}".to_owned())].into(),
            cwd: "work/{partition}".into(),
            timeout: None,
            service: None,
            stop_signal: None,
            stop_timeout: None,
            cache: true,
            max_parallel: None,
            partitions: None,
            partition_map: None,
            sandbox: crate::config::Sandbox::Off,
            sandbox_at: None,
            sandbox_allow: vec![],
            origin: crate::config::Origin {
                file: 0,
                span: 0..0,
            },
        };
        let r = Resolved::new(
            Path::new("/root"),
            &task,
            Some("2025-01-02"),
            EnvMode::Loose,
        );
        assert_eq!(r.commands, vec!["ingest 2025-01-02"]);
        assert_eq!(r.cwd, Path::new("/root/work/2025-01-02"));
        assert_eq!(r.input_globs, vec!["raw/2025-01-02/*.csv"]);
        assert_eq!(r.env_inputs, vec!["TOKEN"]);
        assert_eq!(r.outputs, vec!["out/2025-01-02.csv"]);
        assert_eq!(r.tools, vec!["bin/2025-01-02", "ingest"]);
        assert_eq!(
            r.env,
            vec![
                ("DAY".to_owned(), "2025-01-02".to_owned()),
                ("HOTPASS_PARTITION".to_owned(), "2025-01-02".to_owned())
            ]
        );
    }
}

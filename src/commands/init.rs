//! `hotpass init`: read what the folder holds (Cargo.toml, pyproject.toml,
//! package.json and tsconfig, go.mod, Makefile) and write a starter
//! hotpass.toml with real gates and inputs for it. Every input glob it
//! writes matches a file in the folder: a glob that matches nothing would
//! leave a gate cached however the code changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Context;
use crate::config::load::CONFIG_NAME;
use crate::error::{Error, UsageError};
use crate::fileset::{Ignored, Patterns};

/// The config being written for the folder `dir`.
struct Starter<'a> {
    dir: &'a Path,
    out: String,
    kinds: Vec<&'static str>,
}

/// One task or gate to write.
#[derive(Default)]
struct Entry<'a> {
    name: &'a str,
    description: &'a str,
    run: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    deps: Vec<&'a str>,
}

impl<'a> Starter<'a> {
    fn new(dir: &'a Path) -> Self {
        Starter {
            dir,
            out: String::from(
                "# Written by `hotpass init`. Run everything with `hotpass run`, one gate with\n\
                 # `hotpass run gate:NAME`; `hotpass inputs gate:NAME` shows what its cache key covers.\n\
                 # Every field is described in the configuration reference of the hotpass documentation.\n\n",
            ),
            kinds: Vec::new(),
        }
    }

    fn exists(&self, rel: &str) -> bool {
        self.dir.join(rel).exists()
    }

    /// Whether `glob` matches at least one (not git-ignored) file.
    fn matches(&self, glob: &str) -> bool {
        Patterns::new(&[glob]).is_ok_and(|p| {
            p.expand(self.dir, Ignored::Skip, &[self.dir.join("cache")])
                .is_ok_and(|f| !f.is_empty())
        })
    }

    /// The globs of `candidates` that match something, without repeats.
    fn present(&self, candidates: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in candidates {
            if !out.contains(c) && self.matches(c) {
                out.push(c.clone());
            }
        }
        out
    }

    fn write(&mut self, table: &str, e: Entry) {
        let _ = writeln!(self.out, "[{table}.{}]", e.name);
        let _ = writeln!(self.out, "description = {:?}", e.description);
        if !e.deps.is_empty() {
            let _ = writeln!(self.out, "deps = {:?}", e.deps);
        }
        let _ = writeln!(self.out, "run = {:?}", e.run);
        let inputs = self.present(&e.inputs);
        if !inputs.is_empty() {
            let _ = writeln!(self.out, "inputs = {inputs:?}");
        }
        if !e.outputs.is_empty() {
            let _ = writeln!(self.out, "outputs = {:?}", e.outputs);
        }
        self.out.push('\n');
    }

    fn gate(&mut self, e: Entry) {
        self.write("gates", e);
    }

    fn task(&mut self, e: Entry) {
        self.write("tasks", e);
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Lock files hotpass knows, for every ecosystem: they pin what the
/// commands really run, so they belong in the inputs.
const LOCK_FILES: &[&str] = &[
    "Cargo.lock",
    "uv.lock",
    "poetry.lock",
    "pdm.lock",
    "Pipfile.lock",
    "requirements.txt",
    "requirements-dev.txt",
    "package-lock.json",
    "pnpm-lock.yaml",
    "yarn.lock",
    "bun.lock",
    "bun.lockb",
    "go.sum",
];

fn locks(s: &Starter) -> Vec<String> {
    LOCK_FILES
        .iter()
        .filter(|l| s.exists(l))
        .map(|l| (*l).to_owned())
        .collect()
}

fn rust(s: &mut Starter) {
    s.kinds.push("rust");
    let mut rs = strings(&[
        "src/**/*.rs",
        "tests/**/*.rs",
        "benches/**/*.rs",
        "examples/**/*.rs",
        "Cargo.toml",
    ]);
    rs.extend(locks(s));
    s.task(Entry {
        name: "build",
        description: "Build the crate",
        run: "cargo build --all-targets".into(),
        inputs: rs.clone(),
        ..Entry::default()
    });
    s.gate(Entry {
        name: "fmt",
        description: "Code is formatted",
        run: "cargo fmt --check".into(),
        inputs: rs.clone(),
        ..Entry::default()
    });
    s.gate(Entry {
        name: "clippy",
        description: "No clippy warnings",
        run: "cargo clippy --all-targets -- -D warnings".into(),
        inputs: rs.clone(),
        deps: vec!["build"],
        ..Entry::default()
    });
    s.gate(Entry {
        name: "test",
        description: "Tests pass",
        run: "cargo test".into(),
        inputs: rs,
        deps: vec!["build"],
        ..Entry::default()
    });
}

/// Whether `program` is an executable on PATH.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// How a Python tool is started: through uv when the project is locked with
/// it and uv is here, else the project's virtualenv, else PATH.
fn python_tool(s: &Starter, tool: &str) -> String {
    if s.exists("uv.lock") && on_path("uv") {
        return format!("uv run {tool}");
    }
    for venv in [".venv", "venv"] {
        let p = format!("{venv}/bin/{tool}");
        if s.exists(&p) {
            return p;
        }
    }
    tool.to_owned()
}

fn python(s: &mut Starter) {
    s.kinds.push("python");
    let pyproject: toml::Table = std::fs::read_to_string(s.dir.join("pyproject.toml"))
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let tool = |name: &str| pyproject.get("tool").and_then(|t| t.get(name));
    let src = if s.exists("src") { "src" } else { "." };
    let tests: Vec<&str> = ["tests", "test"]
        .into_iter()
        .filter(|t| s.exists(t))
        .collect();
    let mut py: Vec<String> = if src == "src" {
        let mut v = vec!["src/**/*.py".to_owned()];
        v.extend(tests.iter().map(|t| format!("{t}/**/*.py")));
        v
    } else {
        vec!["**/*.py".to_owned()]
    };
    py.push("pyproject.toml".into());
    py.extend(locks(s));
    let ruff = python_tool(s, "ruff");
    s.gate(Entry {
        name: "format",
        description: "Code is formatted (ruff format)",
        run: format!("{ruff} format --check ."),
        inputs: py.clone(),
        ..Entry::default()
    });
    s.gate(Entry {
        name: "lint",
        description: "ruff finds nothing",
        run: format!("{ruff} check ."),
        inputs: py.clone(),
        ..Entry::default()
    });
    // With `files` configured, mypy knows what to check: no path on the line.
    let mypy_files = tool("mypy").and_then(|m| m.get("files")).is_some();
    let mypy = python_tool(s, "mypy");
    s.gate(Entry {
        name: "types",
        description: "Static types (mypy)",
        run: if mypy_files {
            mypy
        } else {
            format!("{mypy} {src}")
        },
        inputs: py.clone(),
        ..Entry::default()
    });
    let pytest_configured = tool("pytest").and_then(|p| p.get("ini_options")).is_some();
    if pytest_configured || !tests.is_empty() {
        s.gate(Entry {
            name: "test",
            description: "Tests pass (pytest)",
            run: python_tool(s, "pytest"),
            inputs: py,
            ..Entry::default()
        });
    }
}

/// Parses JSON with comments and trailing commas, as tsconfig files are.
fn jsonc(text: &str) -> Option<Value> {
    serde_json::from_str(&without_trailing_commas(&without_comments(text))).ok()
}

/// Calls `f` with each character and whether it is inside a string.
fn scan_json(text: &str, mut f: impl FnMut(char, bool, &mut std::iter::Peekable<std::str::Chars>)) {
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some(c) = chars.next() {
        let inside = in_string;
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        f(c, inside || c == '"', &mut chars);
    }
}

fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    scan_json(text, |c, in_string, rest| {
        if in_string || c != '/' {
            out.push(c);
            return;
        }
        match rest.peek() {
            Some('/') => {
                for n in rest.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            Some('*') => {
                rest.next();
                let mut prev = ' ';
                for n in rest.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    });
    out
}

fn without_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    scan_json(text, |c, in_string, rest| {
        if !in_string && c == ',' {
            let next = rest.clone().find(|n| !n.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                return;
            }
        }
        out.push(c);
    });
    out
}

/// The first folder of a package path such as `./distribution/index.js`.
fn top_folder(path: &str) -> Option<String> {
    let p = path.trim_start_matches("./");
    let (dir, _) = p.split_once('/')?;
    (!dir.is_empty() && !dir.contains('*')).then(|| dir.to_owned())
}

/// Where a Node project's sources are and where its build writes.
struct NodeLayout {
    sources: Vec<String>,
    out_dir: String,
}

fn node_layout(s: &Starter, package: &Value) -> NodeLayout {
    let tsconfig = ["tsconfig.json", "tsconfig.build.json"]
        .iter()
        .find_map(|f| jsonc(&std::fs::read_to_string(s.dir.join(f)).ok()?));
    let options = tsconfig.as_ref().and_then(|t| t.get("compilerOptions"));
    let option = |k: &str| {
        options
            .and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(|v| v.trim_start_matches("./").trim_end_matches('/').to_owned())
    };
    let mut sources: Vec<String> = Vec::new();
    if let Some(include) = tsconfig
        .as_ref()
        .and_then(|t| t.get("include"))
        .and_then(Value::as_array)
    {
        for i in include.iter().filter_map(Value::as_str) {
            let i = i.trim_start_matches("./").trim_end_matches('/');
            sources.push(if i.contains(['*', '?', '{']) || i.contains('.') {
                i.to_owned()
            } else {
                format!("{i}/**")
            });
        }
    }
    if let Some(root) = option("rootDir").filter(|r| r != ".") {
        sources.push(format!("{root}/**"));
    }
    if sources.is_empty() {
        for d in ["src", "source", "lib"] {
            if s.exists(d) {
                sources.push(format!("{d}/**"));
                break;
            }
        }
    }
    for t in ["test", "tests", "__tests__"] {
        if s.exists(t) {
            sources.push(format!("{t}/**"));
        }
    }
    let from_package = ["exports", "main", "module", "types"]
        .iter()
        .filter_map(|k| match package.get(k)? {
            Value::String(p) => top_folder(p),
            Value::Object(o) => o.values().find_map(|v| top_folder(v.as_str()?)),
            _ => None,
        })
        .next()
        .or_else(|| {
            package
                .get("files")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .map(|f| f.trim_start_matches("./").trim_end_matches('/').to_owned())
                .find(|f| !f.contains(['*', '.']))
        });
    let out_dir = option("outDir")
        .or(from_package)
        .unwrap_or_else(|| "dist".to_owned());
    sources.retain(|src| !src.starts_with(&format!("{out_dir}/")) && *src != out_dir);
    NodeLayout { sources, out_dir }
}

fn node(s: &mut Starter) {
    s.kinds.push("node");
    let package: Value = std::fs::read_to_string(s.dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let manager = if s.exists("pnpm-lock.yaml") {
        "pnpm"
    } else if s.exists("yarn.lock") {
        "yarn"
    } else if s.exists("bun.lock") || s.exists("bun.lockb") {
        "bun"
    } else {
        "npm"
    };
    let layout = node_layout(s, &package);
    let mut inputs = layout.sources.clone();
    inputs.extend(strings(&[
        "package.json",
        "tsconfig.json",
        "tsconfig.build.json",
        "eslint.config.js",
        "eslint.config.mjs",
        ".eslintrc.json",
    ]));
    inputs.extend(locks(s));
    let scripts: Vec<String> = package
        .get("scripts")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let has_build = scripts.iter().any(|s| s == "build");
    if has_build {
        s.task(Entry {
            name: "build",
            description: "Build the package",
            run: format!("{manager} run build"),
            inputs: inputs.clone(),
            outputs: vec![format!("{}/**", layout.out_dir)],
            ..Entry::default()
        });
    }
    for script in &scripts {
        let name: String = script
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let gate = matches!(
            script.as_str(),
            "lint" | "test" | "typecheck" | "check" | "format:check" | "xo" | "eslint"
        );
        if gate {
            let description = format!("{manager} run {script}");
            s.gate(Entry {
                name: &name,
                description: &description,
                run: format!("{manager} run {script}"),
                inputs: inputs.clone(),
                deps: if script == "test" && has_build {
                    vec!["build"]
                } else {
                    vec![]
                },
                ..Entry::default()
            });
        }
    }
    if scripts.is_empty() {
        s.task(Entry {
            name: "install",
            description: "Install dependencies",
            run: if manager == "npm" {
                "npm ci".into()
            } else {
                format!("{manager} install")
            },
            inputs: locks(s)
                .into_iter()
                .chain(["package.json".to_owned()])
                .collect(),
            ..Entry::default()
        });
    }
}

fn go(s: &mut Starter) {
    s.kinds.push("go");
    let mut go = strings(&["**/*.go", "go.mod"]);
    go.extend(locks(s));
    s.task(Entry {
        name: "build",
        description: "Build every package",
        run: "go build ./...".into(),
        inputs: go.clone(),
        ..Entry::default()
    });
    for (name, description, run) in [
        ("vet", "go vet finds nothing", "go vet ./..."),
        ("gofmt", "Code is gofmt'ed", "test -z \"$(gofmt -l .)\""),
        ("gotest", "Tests pass", "go test ./..."),
    ] {
        s.gate(Entry {
            name,
            description,
            run: run.into(),
            inputs: go.clone(),
            ..Entry::default()
        });
    }
}

fn make(s: &mut Starter) {
    s.kinds.push("make");
    let text = std::fs::read_to_string(s.dir.join("Makefile")).unwrap_or_default();
    let mut seen = Vec::new();
    for line in text.lines() {
        let Some((target, _)) = line.split_once(':') else {
            continue;
        };
        if line.starts_with(['\t', ' ', '.', '#'])
            || target.contains(['$', '%', ' ', '='])
            || line.contains(":=")
            || seen.contains(&target)
            || !["all", "build", "test", "check", "lint"].contains(&target)
        {
            continue;
        }
        seen.push(target);
        let name = format!("make-{target}");
        let description = format!("make {target}");
        let e = Entry {
            name: &name,
            description: &description,
            run: format!("make {target}"),
            ..Entry::default()
        };
        if ["test", "check", "lint"].contains(&target) {
            s.gate(e);
        } else {
            s.task(e);
        }
    }
}

/// The starter config for the project in `dir`, and the kinds detected.
pub fn starter(dir: &Path) -> (String, Vec<&'static str>) {
    let mut s = Starter::new(dir);
    type Writer = fn(&mut Starter);
    let kinds: [(&str, Writer); 5] = [
        ("Cargo.toml", rust),
        ("pyproject.toml", python),
        ("package.json", node),
        ("go.mod", go),
        ("Makefile", make),
    ];
    for (marker, write) in kinds {
        if s.exists(marker) {
            write(&mut s);
        }
    }
    if s.kinds.is_empty() {
        s.out
            .push_str("# Nothing recognised here; an example to adapt:\n");
        s.task(Entry {
            name: "hello",
            description: "An example task",
            run: "echo hello from hotpass".into(),
            ..Entry::default()
        });
    }
    (s.out, s.kinds)
}

/// Writes the starter config; refuses to overwrite without `--force`.
pub fn run(ctx: &Context, force: bool) -> Result<u8, Error> {
    let dir: PathBuf = match &ctx.load.dir {
        Some(d) => ctx.cwd.join(d),
        None => ctx.cwd.clone(),
    };
    let path = dir.join(CONFIG_NAME);
    if path.exists() && !force {
        return Err(UsageError::new(
            format!("{} already exists", path.display()),
            Some("run `hotpass init --force` to replace it".into()),
        )
        .into());
    }
    let (text, kinds) = starter(&dir);
    crate::atomic::write_atomic(&path, text.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    let found = if kinds.is_empty() {
        "nothing recognised".to_owned()
    } else {
        kinds.join(", ")
    };
    println!(
        "wrote {} ({found}); next: `hotpass list`, then `hotpass run`",
        path.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonc_reads_comments_and_trailing_commas() {
        let v = jsonc(
            "{\n  // the layout\n  \"compilerOptions\": { \"outDir\": \"out\", /* here */ },\n  \"include\": [\"source\",],\n  \"url\": \"http://x//y\"\n}",
        )
        .unwrap();
        assert_eq!(v["compilerOptions"]["outDir"], "out");
        assert_eq!(v["include"][0], "source");
        assert_eq!(v["url"], "http://x//y");
    }

    #[test]
    fn package_paths_give_their_folder() {
        assert_eq!(
            top_folder("./distribution/index.js").as_deref(),
            Some("distribution")
        );
        assert_eq!(top_folder("index.js"), None);
    }
}

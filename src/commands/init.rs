//! `hotpass init`: look at what the folder holds (Cargo.toml, pyproject.toml,
//! package.json, go.mod, Makefile) and write a starter hotpass.toml with real
//! gates and inputs for it.

use std::fmt::Write as _;
use std::path::Path;

use crate::Context;
use crate::config::load::CONFIG_NAME;
use crate::error::{Error, UsageError};

fn gate(
    out: &mut String,
    name: &str,
    description: &str,
    run: &str,
    inputs: &[&str],
    deps: &[&str],
) {
    let _ = writeln!(out, "[gates.{name}]");
    let _ = writeln!(out, "description = {description:?}");
    if !deps.is_empty() {
        let _ = writeln!(out, "deps = {deps:?}");
    }
    let _ = writeln!(out, "run = {run:?}");
    let _ = writeln!(out, "inputs = {inputs:?}\n");
}

fn task(
    out: &mut String,
    name: &str,
    description: &str,
    run: &str,
    inputs: &[&str],
    outputs: &[&str],
) {
    let _ = writeln!(out, "[tasks.{name}]");
    let _ = writeln!(out, "description = {description:?}");
    let _ = writeln!(out, "run = {run:?}");
    if !inputs.is_empty() {
        let _ = writeln!(out, "inputs = {inputs:?}");
    }
    if !outputs.is_empty() {
        let _ = writeln!(out, "outputs = {outputs:?}");
    }
    out.push('\n');
}

/// The starter config for the project in `dir`, and the kinds detected.
pub fn starter(dir: &Path) -> (String, Vec<&'static str>) {
    let mut out = String::from(
        "# Written by `hotpass init`. Run everything with `hotpass run`,\n# one gate with `hotpass run gate:NAME`. Reference: docs/configuration.md\n\n",
    );
    let mut kinds = Vec::new();
    if dir.join("Cargo.toml").is_file() {
        kinds.push("rust");
        let rs = [
            "src/**/*.rs",
            "tests/**/*.rs",
            "benches/**/*.rs",
            "examples/**/*.rs",
            "Cargo.toml",
            "Cargo.lock",
        ];
        task(
            &mut out,
            "build",
            "Build the crate",
            "cargo build --all-targets",
            &rs,
            &[],
        );
        gate(
            &mut out,
            "fmt",
            "Code is formatted",
            "cargo fmt --check",
            &rs,
            &[],
        );
        gate(
            &mut out,
            "clippy",
            "No clippy warnings",
            "cargo clippy --all-targets -- -D warnings",
            &rs,
            &["build"],
        );
        gate(
            &mut out,
            "test",
            "Tests pass",
            "cargo test",
            &rs,
            &["build"],
        );
    }
    if dir.join("pyproject.toml").is_file() {
        kinds.push("python");
        let runner = if dir.join("uv.lock").is_file() {
            "uv run "
        } else {
            ""
        };
        let py = ["**/*.py", "pyproject.toml"];
        gate(
            &mut out,
            "lint",
            "ruff finds nothing",
            &format!("{runner}ruff check ."),
            &py,
            &[],
        );
        gate(
            &mut out,
            "types",
            "Static types",
            &format!("{runner}mypy ."),
            &py,
            &[],
        );
        gate(
            &mut out,
            "pytest",
            "Tests pass",
            &format!("{runner}pytest"),
            &py,
            &[],
        );
    }
    if dir.join("package.json").is_file() {
        kinds.push("node");
        let scripts: Vec<String> = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v.get("scripts")
                    .and_then(|s| s.as_object())
                    .map(|o| o.keys().cloned().collect())
            })
            .unwrap_or_default();
        let js = [
            "src/**",
            "package.json",
            "package-lock.json",
            "tsconfig.json",
        ];
        for s in &scripts {
            let name: String = s
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let run = format!("npm run {s}");
            match s.as_str() {
                "build" => task(&mut out, "build", "npm run build", &run, &js, &["dist/**"]),
                "lint" | "test" | "typecheck" | "check" | "format:check" => {
                    gate(&mut out, &name, &format!("npm run {s}"), &run, &js, &[])
                }
                _ => {}
            }
        }
        if scripts.is_empty() {
            task(
                &mut out,
                "install",
                "Install dependencies",
                "npm ci",
                &["package.json", "package-lock.json"],
                &[],
            );
        }
    }
    if dir.join("go.mod").is_file() {
        kinds.push("go");
        let go = ["**/*.go", "go.mod", "go.sum"];
        task(
            &mut out,
            "build",
            "Build every package",
            "go build ./...",
            &go,
            &[],
        );
        gate(
            &mut out,
            "vet",
            "go vet finds nothing",
            "go vet ./...",
            &go,
            &[],
        );
        gate(
            &mut out,
            "gofmt",
            "Code is gofmt'ed",
            "test -z \"$(gofmt -l .)\"",
            &go,
            &[],
        );
        gate(&mut out, "gotest", "Tests pass", "go test ./...", &go, &[]);
    }
    if dir.join("Makefile").is_file() {
        kinds.push("make");
        let text = std::fs::read_to_string(dir.join("Makefile")).unwrap_or_default();
        let mut seen = Vec::new();
        for line in text.lines() {
            let Some((target, _)) = line.split_once(':') else {
                continue;
            };
            if line.starts_with(['\t', ' ', '.', '#'])
                || target.contains(['$', '%', ' ', '='])
                || line.contains(":=")
            {
                continue;
            }
            if ["all", "build", "test", "check", "lint"].contains(&target)
                && !seen.contains(&target)
            {
                seen.push(target);
                let name = format!("make-{target}");
                if ["test", "check", "lint"].contains(&target) {
                    let _ = writeln!(
                        out,
                        "[gates.{name}]\ndescription = \"make {target}\"\nrun = \"make {target}\"\n"
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "[tasks.{name}]\ndescription = \"make {target}\"\nrun = \"make {target}\"\n"
                    );
                }
            }
        }
    }
    if kinds.is_empty() {
        out.push_str("# Nothing recognised here; an example to adapt:\n");
        task(
            &mut out,
            "hello",
            "An example task",
            "echo hello from hotpass",
            &["hotpass.toml"],
            &[],
        );
    }
    (out, kinds)
}

/// Writes the starter config; refuses to overwrite without `--force`.
pub fn run(ctx: &Context, force: bool) -> Result<u8, Error> {
    let dir = match &ctx.load.dir {
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

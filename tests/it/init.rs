//! `hotpass init` reads the project: where its sources and outputs are, how
//! its tools start, and which lock files pin them. Every glob it writes
//! matches something, and the config runs green.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, assert_has};

fn executable(p: &Project, rel: &str, script: &str) {
    p.write(rel, script);
    std::fs::set_permissions(p.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fresh() -> Project {
    let p = Project::new("");
    std::fs::remove_file(p.path("hotpass.toml")).unwrap();
    p
}

/// Runs `init`, then the config under --strict: green, with no glob warning.
fn init_and_run(p: &Project, env: &[(&str, &str)]) -> String {
    p.run_env(&["init"], env).code(0);
    let config = p.read("hotpass.toml");
    let r = p.run_env(&["run", "--strict"], env);
    assert_eq!(r.code, 0, "{config}\n{r:?}");
    assert!(
        !r.stderr.contains("matches no file"),
        "{config}\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("matched nothing"),
        "{config}\n{}",
        r.stderr
    );
    config
}

/// A TypeScript library whose sources are in `source/` and whose build
/// writes `distribution/` (read from tsconfig and package.json).
#[test]
fn init_reads_a_typescript_library() {
    if std::process::Command::new("npm")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: npm is not on PATH");
        return;
    }
    let p = fresh();
    p.write(
        "package.json",
        r#"{
  "name": "lib",
  "type": "module",
  "exports": "./distribution/index.js",
  "files": ["distribution"],
  "scripts": {
    "build": "mkdir -p distribution && cp source/index.ts distribution/index.js",
    "test": "node --test test/",
    "lint": "node -e 0"
  }
}"#,
    );
    p.write("package-lock.json", "{\"lockfileVersion\": 3}\n");
    p.write(
        "tsconfig.json",
        "{\n  // compiled with tsc\n  \"compilerOptions\": { \"rootDir\": \"source\", \"outDir\": \"distribution\", },\n  \"include\": [\"source\"],\n}\n",
    );
    p.write("source/index.ts", "export const one = 1;\n");
    p.write(
        "test/one.test.js",
        "import test from 'node:test';\ntest('one', () => {});\n",
    );
    let config = init_and_run(&p, &[]);
    assert_has(&config, "[tasks.build]");
    assert_has(&config, "run = \"npm run build\"");
    assert_has(&config, "\"source/**\"");
    assert_has(&config, "\"package-lock.json\"");
    assert_has(&config, "outputs = [\"distribution/**\"]");
    assert_has(&config, "[gates.test]");
    assert!(!config.contains("src/"), "{config}");
    assert!(p.exists("distribution/index.js"));
    assert_has(
        &config,
        "configuration reference of the hotpass documentation",
    );
}

/// A Python src-layout project with `[tool.mypy] files` and no uv: mypy
/// runs without a path, tools come from the virtualenv, and the lock file
/// is an input.
#[test]
fn init_reads_a_python_src_layout_project() {
    let p = fresh();
    p.write(
        "pyproject.toml",
        "[project]\nname = \"pkg\"\n\n[tool.mypy]\nfiles = [\"src\"]\n\n[tool.ruff]\nline-length = 100\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n",
    );
    p.write("uv.lock", "version = 1\n");
    p.write("src/pkg/__init__.py", "ONE = 1\n");
    p.write("tests/test_one.py", "def test_one():\n    assert True\n");
    for tool in ["ruff", "mypy", "pytest"] {
        executable(&p, &format!(".venv/bin/{tool}"), "#!/bin/sh\nexit 0\n");
    }
    // No uv on this PATH: even with uv.lock, the venv's tools are used.
    let env = [("PATH", "/usr/bin:/bin")];
    let config = init_and_run(&p, &env);
    assert_has(&config, "run = \".venv/bin/mypy\"");
    assert_has(&config, "run = \".venv/bin/ruff check .\"");
    assert_has(&config, "run = \".venv/bin/ruff format --check .\"");
    assert_has(&config, "run = \".venv/bin/pytest\"");
    assert_has(&config, "\"src/**/*.py\"");
    assert_has(&config, "\"tests/**/*.py\"");
    assert_has(&config, "\"uv.lock\"");
    assert!(!config.contains("uv run"), "{config}");
}

//! The input audit (`hotpass audit`, `run --audit`) and the sandbox
//! (`sandbox = true`): what a task really touches, and what it may touch.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::support::{Project, Run, assert_has, statuses};

/// Whether a kernel feature the test needs is here. Where it is not, the
/// test skips with a printed reason, except under `HOTPASS_TEST_TOOLS=1`
/// (CI), where that is a failure.
fn have(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            std::env::var("HOTPASS_TEST_TOOLS").as_deref() != Ok("1"),
            "{what} is required (HOTPASS_TEST_TOOLS=1)"
        );
        eprintln!("skipping: this kernel has no {what}");
    }
    ok
}

fn audit_here() -> bool {
    let ok = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .is_ok_and(|a| a.split_whitespace().any(|w| w == "user_notif"));
    have("seccomp user notification", ok)
}

fn landlock_here() -> bool {
    // SAFETY: asks for the Landlock ABI version only.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    have("Landlock", abi >= 1)
}

/// The lines of the report's block `title` (up to the next heading).
fn listed(report: &str, title: &str) -> Vec<String> {
    let mut lines = report.lines().skip_while(|l| !l.contains(title));
    lines.next();
    lines
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The audit's JSON, which must be all of stdout.
fn audit_json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\n{}", r.stdout, r.stderr))
}

/// A task that reads one file it does not declare, with `cat`.
fn reader() -> Project {
    let p = Project::new(
        "[tasks.build]\n\
         run = \"mkdir -p out && cat src/a.txt README.md > out/all.txt\"\n\
         inputs = [\"src/**\"]\n\
         outputs = [\"out/**\"]\n",
    );
    p.write("src/a.txt", "a\n").write("README.md", "readme\n");
    p
}

#[test]
fn an_undeclared_read_is_reported_with_the_glob_to_add() {
    if !audit_here() {
        return;
    }
    let p = reader();
    let r = p.run(&["audit", "build"]);
    r.code(0);
    assert_eq!(
        listed(&r.stdout, "undeclared inputs"),
        vec!["README.md"],
        "{}",
        r.stdout
    );
    assert_has(
        &r.stdout,
        "suggested edit, in hotpass.toml under [tasks.build]:",
    );
    assert_has(&r.stdout, r#"inputs = ["src/**", "README.md"]"#);
    assert_has(
        &r.stdout,
        "not stored: it read files its inputs do not declare",
    );
    assert!(
        !r.stdout.contains("undeclared outputs"),
        "out/all.txt is declared\n{}",
        r.stdout
    );
    // Not stored: the next run runs it again.
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["build"], "ok", "{}", r.stdout);
}

#[test]
fn reads_by_child_processes_are_seen() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.pipe]\n\
         run = \"cat notes.txt | wc -l > count.txt\"\n\
         outputs = [\"count.txt\"]\n\
         \n\
         [tasks.py]\n\
         run = \"python3 -c 'import subprocess; open(\\\"data.csv\\\").read(); subprocess.run([\\\"cat\\\", \\\"child.txt\\\"], check=True)'\"\n\
         inputs = [\"other.txt\"]\n",
    );
    p.write("notes.txt", "1\n2\n")
        .write("data.csv", "x\n")
        .write("child.txt", "c\n")
        .write("other.txt", "o\n");
    let r = p.run(&["run", "--audit"]);
    r.code(0);
    let pipe = r.stdout.split("audit py").next().unwrap_or_default();
    assert_eq!(
        listed(pipe, "undeclared inputs"),
        vec!["notes.txt"],
        "{}",
        r.stdout
    );
    let py = r.stdout.split("audit py").nth(1).unwrap_or_default();
    assert_eq!(
        listed(py, "undeclared inputs"),
        vec!["child.txt", "data.csv"],
        "{}",
        r.stdout
    );
    assert_eq!(listed(py, "declared inputs never read"), vec!["other.txt"]);
    assert_has(py, r#"inputs = ["other.txt", "child.txt", "data.csv"]"#);
}

#[test]
fn a_static_binary_is_seen() {
    if !audit_here() {
        return;
    }
    let p = Project::new("[tasks.st]\nrun = \"./readfile secret.txt\"\ninputs = [\"readfile\"]\n");
    p.write("secret.txt", "s3cret\n").write(
        "readfile.c",
        "#include <fcntl.h>\n#include <unistd.h>\n\
         int main(int c, char **v) { char b[64]; int fd = open(v[1], O_RDONLY);\n\
         int n = read(fd, b, sizeof b); write(1, b, n > 0 ? n : 0); return fd < 0; }\n",
    );
    let built = Command::new("cc")
        .args(["-static", "-O2", "-o", "readfile", "readfile.c"])
        .current_dir(p.root())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have("static C toolchain (cc -static)", built) {
        return;
    }
    let file = Command::new("file").arg(p.path("readfile")).output();
    if let Ok(out) = file {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("statically linked"), "{text}");
    }
    for method in ["notify", "ptrace"] {
        let r = p.run_env(&["audit", "st"], &[("HOTPASS_AUDIT_METHOD", method)]);
        r.code(0);
        assert_has(&r.stdout, "s3cret");
        assert_eq!(
            listed(&r.stdout, "undeclared inputs"),
            vec!["secret.txt"],
            "{method}"
        );
    }
}

#[test]
fn an_undeclared_write_is_reported() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.gen]\n\
         run = \"mkdir -p dist && cp in.txt dist/out.txt && echo log > build.log && echo t > tmp.txt && rm tmp.txt\"\n\
         inputs = [\"in.txt\"]\n\
         outputs = [\"dist/**\"]\n",
    );
    p.write("in.txt", "x\n");
    let r = p.run(&["audit", "gen"]);
    r.code(0);
    // A file it made and removed is its own business.
    assert_eq!(
        listed(&r.stdout, "undeclared outputs"),
        vec!["build.log"],
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("undeclared inputs"), "{}", r.stdout);
    assert_has(&r.stdout, r#"outputs = ["dist/**", "build.log"]"#);
}

#[test]
fn a_clean_audit_says_so_and_its_result_is_stored() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.copy]\nrun = \"cp in.txt out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "x\n");
    let r = p.run(&["audit", "copy"]);
    r.code(0);
    assert_has(&r.stdout, "audit copy: clean");
    assert!(!r.stdout.contains("suggested edit"), "{}", r.stdout);
    let (r, s) = p.run_summary(&["run"], &[]);
    r.code(0);
    assert_eq!(statuses(&s)["copy"], "cached", "{}", r.stdout);
}

#[test]
fn an_audited_run_runs_what_the_cache_holds_and_its_json_parses() {
    if !audit_here() {
        return;
    }
    let p = reader();
    p.write(
        "hotpass.toml",
        "[tasks.build]\n\
         run = \"mkdir -p out && cat src/a.txt README.md > out/all.txt && echo > stray.txt\"\n\
         inputs = [\"src/**\", \"README.md\"]\n\
         outputs = [\"out/**\"]\n",
    );
    p.run(&["run"]).code(0);
    let r = p.run(&["run", "--audit=json"]);
    r.code(0);
    let json = audit_json(&r);
    // The run talks on stderr.
    assert_has(&r.stderr, "Summary");
    assert_eq!(json["clean"], false);
    let build = &json["instances"][0];
    assert_eq!(build["instance"], "build");
    assert_eq!(build["undeclared_inputs"], serde_json::json!([]));
    assert_eq!(
        build["undeclared_outputs"],
        serde_json::json!(["stray.txt"])
    );
    assert_eq!(build["suggested_outputs"], serde_json::json!(["stray.txt"]));
    assert_eq!(build["succeeded"], true);
    // It read no undeclared file: its result is stored.
    assert_eq!(build["stored"], true);
    assert!(
        build["outside_reads"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "the shell's own libraries are read outside the project"
    );
}

/// A sandboxed project: `ok` reads what it declares and writes its
/// output folder; `sneak` reads a file it does not declare.
fn sandboxed() -> Project {
    let p = Project::new(
        "[tasks.ok]\n\
         run = \"cat src/a.txt > dist/out.txt && echo t > $TMPDIR/t && cat $TMPDIR/t && ls\"\n\
         inputs = [\"src/a.txt\"]\n\
         outputs = [\"dist/**\"]\n\
         sandbox = true\n\
         \n\
         [tasks.sneak]\n\
         run = \"cat src/a.txt secret.txt\"\n\
         inputs = [\"src/a.txt\"]\n\
         sandbox = true\n\
         \n\
         [tasks.scribble]\n\
         run = \"echo x >> src/a.txt\"\n\
         inputs = [\"src/b.txt\"]\n\
         sandbox = true\n",
    );
    p.write("src/a.txt", "a\n")
        .write("src/b.txt", "b\n")
        .write("secret.txt", "s3cret\n");
    p
}

#[test]
fn a_sandboxed_task_reads_what_it_declares_and_nothing_else() {
    if !landlock_here() {
        return;
    }
    let p = sandboxed();
    let r = p.run(&["run", "ok"]);
    r.code(0);
    assert_eq!(p.read("dist/out.txt"), "a\n");
    assert_has(&r.stdout, "ok | t");
    let r = p.run(&["run", "sneak"]);
    r.code(1);
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);
    assert_has(&r.stdout, "Permission denied");
    assert_has(&r.stdout, "the sandbox denied an access");
    assert_has(&r.stdout, "hotpass audit sneak");
    assert_has(&r.stderr, "sneak: the sandbox denied an access");
    let r = p.run(&["run", "scribble"]);
    r.code(1);
    assert_eq!(p.read("src/a.txt"), "a\n", "an input is not an output");
    assert_has(&r.stdout, "the sandbox denied an access");
}

#[test]
fn a_sandboxed_python_and_its_subprocess_read_only_what_is_declared() {
    if !landlock_here() {
        return;
    }
    let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.executable); print(sys.base_prefix)",
        ])
        .output()
    else {
        eprintln!("skipping: no python3");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let (python, prefix) = (lines.next().unwrap(), lines.next().unwrap());
    let p = Project::new(&format!(
        "[settings]\nsandbox = true\nsandbox_allow = [\"{prefix}\"]\n\n\
         [tasks.py]\n\
         run = \"{python} -c 'import subprocess; print(open(\\\"in.txt\\\").read().strip()); subprocess.run([\\\"cat\\\", \\\"other.txt\\\"], check=True)'\"\n\
         inputs = [\"in.txt\"]\n"
    ));
    p.write("in.txt", "declared\n")
        .write("other.txt", "undeclared\n");
    let r = p.run(&["run"]);
    r.code(1);
    assert_has(&r.stdout, "py | declared");
    assert!(!r.stdout.contains("py | undeclared"), "{}", r.stdout);
    assert_has(&r.stdout, "the sandbox denied an access");
}

/// `command` with Landlock made unavailable: a seccomp filter makes its
/// system calls fail with ENOSYS, as on a kernel without it.
fn without_landlock(mut command: Command) -> Command {
    // SAFETY: the closure runs in the child before exec and only makes
    // system calls on a program built before the fork.
    let code: Vec<libc::sock_filter> = {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        vec![
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: libc::SYS_landlock_create_ruleset as u32,
            },
            stmt(
                libc::BPF_RET | libc::BPF_K,
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ]
    };
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: code.len() as u16,
                filter: code.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[test]
fn without_landlock_a_sandboxed_task_is_refused_unless_best_effort() {
    let p = Project::new(
        "[tasks.strict]\nrun = \"echo strict\"\nsandbox = true\n\n\
         [tasks.loose]\nrun = \"echo loose\"\nsandbox = \"best-effort\"\n",
    );
    let out = without_landlock(p.command(&["run", "strict"]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_has(&stderr, "`strict` must run in the sandbox");
    assert_has(&stderr, "hotpass.toml:3:11");
    assert_has(&stderr, "best-effort");
    let out = without_landlock(p.command(&["run", "loose"]))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_has(&stdout, "loose | loose");
    assert_has(&stderr, "run outside the sandbox");
}

#[test]
fn an_unknown_sandbox_mode_is_a_config_error() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\nsandbox = \"yes\"\n");
    let r = p.run(&["run"]);
    r.code(2);
    assert_has(&r.stderr, "unknown sandbox mode `yes`");
    assert_has(&r.stderr, "hotpass.toml:3");
}

#[test]
fn a_partitions_suggestion_names_the_partition() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.day]\n\
         run = \"mkdir -p out && cat raw/{partition}.csv extra/{partition}.txt > out/{partition}.csv\"\n\
         inputs = [\"raw/{partition}.csv\"]\n\
         outputs = [\"out/{partition}.csv\"]\n\
         partitions = { daily = { start = \"2025-01-01\" } }\n",
    );
    p.write("raw/2025-01-02.csv", "r\n")
        .write("extra/2025-01-02.txt", "e\n");
    let r = p.run(&["audit", "day@2025-01-02", "--json"]);
    r.code(0);
    let json = audit_json(&r);
    let day = &json["instances"][0];
    assert_eq!(day["instance"], "day@2025-01-02");
    assert_eq!(day["partition"], "2025-01-02");
    assert_eq!(
        day["undeclared_inputs"],
        serde_json::json!(["extra/2025-01-02.txt"])
    );
    assert_eq!(
        day["suggested_inputs"],
        serde_json::json!(["extra/{partition}.txt"])
    );
    assert_eq!(day["stored"], false);
    assert_has(
        day["not_stored"].as_str().unwrap_or_default(),
        "its inputs do not declare",
    );
}

#[test]
fn a_sandboxed_task_reads_its_dependencies_outputs() {
    if !landlock_here() {
        return;
    }
    let p = Project::new(
        "[tasks.gen]\n\
         run = \"mkdir -p gen && cp src.txt gen/made.txt\"\n\
         inputs = [\"src.txt\"]\n\
         outputs = [\"gen/**\"]\n\
         \n\
         [tasks.use]\n\
         deps = [\"gen\"]\n\
         run = \"cat gen/made.txt > report.txt\"\n\
         outputs = [\"report.txt\"]\n\
         sandbox = true\n\
         \n\
         [tasks.odd]\n\
         run = \"cat src.txt\"\n\
         sandbox = true\n",
    );
    p.write("src.txt", "made\n");
    p.run(&["run", "use"]).code(0);
    assert_eq!(p.read("report.txt"), "made\n");
    // A failure in the sandbox always points at the audit.
    let r = p.run(&["run", "odd"]);
    r.code(1);
    assert_has(&r.stdout, "hotpass audit odd");
}

#[test]
fn doctor_says_whether_the_audit_and_the_sandbox_are_here() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\n");
    let r = p.run(&["doctor"]);
    let audit = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .is_ok_and(|a| a.contains("user_notif"));
    if audit {
        assert_has(&r.stdout, "ok   input audit");
    } else {
        assert_has(&r.stdout, "note input audit");
    }
    assert!(
        r.stdout.contains("ok   sandbox: Landlock ABI") || r.stdout.contains("note sandbox"),
        "{}",
        r.stdout
    );
}

/// Both ways of auditing see the same files: the listener, and ptrace
/// (where the kernel has no user notification).
#[test]
fn the_traced_audit_sees_what_the_listener_sees() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.all]\n\
         run = \"cat README.md > /dev/null && cat notes.txt | wc -l > count.txt && python3 -c 'import subprocess; open(\\\"data.csv\\\").read(); subprocess.run([\\\"cat\\\", \\\"child.txt\\\"], check=True)' && echo x > extra.log\"\n\
         inputs = [\"other.txt\"]\n",
    );
    p.write("README.md", "r\n")
        .write("notes.txt", "1\n")
        .write("data.csv", "d\n")
        .write("child.txt", "c\n")
        .write("other.txt", "o\n");
    for method in ["notify", "ptrace"] {
        let r = p.run_env(
            &["audit", "all", "--json"],
            &[("HOTPASS_AUDIT_METHOD", method)],
        );
        r.code(0);
        let json = audit_json(&r);
        let all = &json["instances"][0];
        assert_eq!(
            all["undeclared_inputs"],
            serde_json::json!(["README.md", "child.txt", "data.csv", "notes.txt"]),
            "{method}"
        );
        assert_eq!(
            all["undeclared_outputs"],
            serde_json::json!(["count.txt", "extra.log"]),
            "{method}"
        );
        assert_eq!(
            all["unread_inputs"],
            serde_json::json!(["other.txt"]),
            "{method}"
        );
    }
}

/// A task that itself runs `hotpass audit` (as a project's test suite
/// may): Linux allows one listener per process tree, and a tracer's stops
/// rank below a listener's, so the inner audit would see nothing. It says
/// so instead of reporting a clean audit.
#[test]
fn an_audit_inside_an_audit_says_it_cannot() {
    if !audit_here() {
        return;
    }
    let bin = crate::support::bin();
    let p = Project::new(&format!(
        "[tasks.outer]\nrun = \"cd inner && {} audit x\"\n",
        bin.display()
    ));
    p.write("inner/hotpass.toml", "[tasks.x]\nrun = \"cat data.txt\"\n")
        .write("inner/data.txt", "inner data\n");
    let r = p.run(&["audit", "outer"]);
    r.code(1);
    assert_has(&r.stdout, "an audit cannot run inside another");
    assert!(!r.stdout.contains("audit x: clean"), "{}", r.stdout);
}

/// Under the ptrace audit the tracer passes signals on: a task that times
/// out gets its stop signal, and its handler runs.
#[test]
fn a_traced_task_still_gets_its_signals() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.slow]\n\
         run = \"trap 'echo got-term; exit 3' TERM; echo started; sleep 30 & wait\"\n\
         timeout = \"1s\"\n\
         stop_timeout = \"20s\"\n",
    );
    let r = p.run_env(&["audit", "slow"], &[("HOTPASS_AUDIT_METHOD", "ptrace")]);
    r.code(1);
    assert_has(&r.stdout, "slow | started");
    assert_has(&r.stdout, "slow | got-term");
    assert_has(&r.stdout, "timed out");
}

#[test]
fn a_group_has_nothing_to_audit() {
    if !audit_here() {
        return;
    }
    let p = Project::new(
        "[tasks.a]\nrun = \"cat in.txt\"\ninputs = [\"in.txt\"]\n\n[tasks.all]\ndeps = [\"a\"]\n",
    );
    p.write("in.txt", "x\n");
    let r = p.run(&["run", "--audit=json"]);
    r.code(0);
    let json = audit_json(&r);
    let names: Vec<&str> = json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a"]);
    assert_eq!(json["clean"], true);
}

#[test]
fn an_unknown_audit_method_is_a_usage_error() {
    let p = Project::new("[tasks.t]\nrun = \"true\"\n");
    let r = p.run_env(&["audit", "t"], &[("HOTPASS_AUDIT_METHOD", "strace")]);
    r.code(2);
    assert_has(&r.stderr, "HOTPASS_AUDIT_METHOD is `strace`");
    let r = p.run(&["run", "--audit", "--dry-run"]);
    r.code(2);
}

#[test]
fn a_missing_sandbox_allow_path_is_warned_about() {
    if !landlock_here() {
        return;
    }
    let p = Project::new(
        "[tasks.t]\nrun = \"true\"\nsandbox = true\nsandbox_allow = [\"no/such/folder\"]\n",
    );
    let r = p.run(&["run"]);
    r.code(0);
    assert_has(&r.stderr, "sandbox_allow names");
    assert_has(&r.stderr, "no/such/folder, which does not exist");
}

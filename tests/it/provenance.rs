//! `--provenance`: an in-toto Statement with a SLSA v1 predicate for the
//! outputs, checked here and, where installed (required in CI), by the
//! in-toto-attestation and securesystemslib Python packages.

use crate::support::{Project, assert_has};

const PIPELINE: &str = "[tasks.build]\nrun = \"mkdir -p out && cp src/a.txt out/a.txt\"\n\
    inputs = [\"src/*.txt\", \"$SECRET\"]\noutputs = [\"out/a.txt\"]\n\
    [tasks.pack]\ndeps = [\"build\"]\nrun = \"cat out/a.txt out/a.txt > out/b.txt\"\n\
    inputs = [\"out/a.txt\"]\noutputs = [\"out/b.txt\"]\n";

fn sha256(p: &Project, rel: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p.path(rel))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn python_ok() -> bool {
    crate::support::python_has(
        "in_toto_attestation, securesystemslib, google.protobuf",
        "in-toto-attestation securesystemslib",
    )
}

/// Validates `file` with the Python consumers (and, for an envelope,
/// verifies its signature); returns the statement.
fn consumers(p: &Project, file: &str, key: &[&str]) -> Option<serde_json::Value> {
    if !python_ok() {
        return None;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/provenance/validate.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(p.path(file))
        .args(key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn subjects(s: &serde_json::Value) -> Vec<(String, String)> {
    s["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_owned(),
                x["digest"]["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A two-stage pipeline: the subjects are exactly the selected outputs with
/// their sha256; every input and the tools are resolved dependencies; no
/// `$NAME` value appears. A fully cached second run attests the same
/// subjects as restored, built by the first run's invocation.
#[test]
fn a_run_attests_its_outputs_and_a_cached_run_says_who_built_them() {
    let p = Project::new(PIPELINE);
    p.write("src/a.txt", "alpha\n");
    let secret = [("SECRET", "s3cr3t-value-never-shown")];
    p.run_env(&["run", "--provenance", "prov.json"], &secret)
        .code(0);
    let text = p.read("prov.json");
    assert!(!text.contains("s3cr3t-value-never-shown"));
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        subjects(&s),
        vec![
            ("out/a.txt".to_owned(), sha256(&p, "out/a.txt")),
            ("out/b.txt".to_owned(), sha256(&p, "out/b.txt")),
        ]
    );
    let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let dep = |name: &str| deps.iter().find(|d| d["name"] == name);
    assert_eq!(
        dep("src/a.txt").expect("the input")["digest"]["sha256"],
        sha256(&p, "src/a.txt")
    );
    assert!(dep("out/a.txt").is_some(), "pack's input");
    assert!(dep("env:SECRET").is_some(), "the $NAME input, by name");
    let tool = dep("tool:mkdir").expect("the tools");
    assert_eq!(tool["digest"]["sha256"].as_str().unwrap().len(), 64);
    assert_has(tool["uri"].as_str().unwrap(), "mkdir");
    let first = s["predicate"]["runDetails"]["metadata"]["invocationId"]
        .as_str()
        .unwrap()
        .to_owned();
    consumers(&p, "prov.json", &[]);
    // Fully cached: the same subjects, restored, built by the first run.
    p.run_env(&["run", "--provenance", "prov2.json"], &secret)
        .code(0);
    let s2: serde_json::Value = serde_json::from_str(&p.read("prov2.json")).unwrap();
    assert_eq!(subjects(&s2), subjects(&s));
    for subject in s2["subject"].as_array().unwrap() {
        assert_eq!(subject["annotations"]["restored"], true);
        assert_eq!(subject["annotations"]["builtBy"], first.as_str());
    }
    assert_ne!(
        s2["predicate"]["runDetails"]["metadata"]["invocationId"],
        first.as_str()
    );
}

/// A backfill attests every partition's outputs; `--provenance-subjects`
/// picks other instances than the selected ones.
#[test]
fn a_backfill_attests_every_partition() {
    let p = Project::new(
        "[tasks.day]\nrun = \"mkdir -p out && echo {partition} > out/{partition}.txt\"\n\
         inputs = [\"in\"]\noutputs = [\"out/{partition}.txt\"]\n\
         partitions = { daily = { start = \"2025-01-01\" } }\n\
         [tasks.all]\ndeps = [\"day\"]\nrun = \"cat out/*.txt > all.txt\"\ninputs = [\"out/*.txt\"]\noutputs = [\"all.txt\"]\n",
    );
    p.write("in", "1\n");
    p.run(&[
        "run",
        "day",
        "--backfill",
        "2025-01-01..2025-01-03",
        "--provenance",
        "prov.json",
    ])
    .code(0);
    let s: serde_json::Value = serde_json::from_str(&p.read("prov.json")).unwrap();
    let names: Vec<String> = subjects(&s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "out/2025-01-01.txt",
            "out/2025-01-02.txt",
            "out/2025-01-03.txt"
        ]
    );
    p.run(&[
        "run",
        "all",
        "--backfill",
        "2025-01-01..2025-01-03",
        "--provenance",
        "prov-all.json",
        "--provenance-subjects",
        "day",
    ])
    .code(0);
    let s: serde_json::Value = serde_json::from_str(&p.read("prov-all.json")).unwrap();
    assert_eq!(subjects(&s).len(), 3, "the days' outputs, not all.txt");
}

/// With HOTPASS_PROVENANCE_KEY the statement comes in a DSSE envelope that
/// securesystemslib verifies with the public key; a bad key file is an
/// error that names it.
#[test]
fn a_signed_statement_verifies_with_the_public_key() {
    let p = Project::new(PIPELINE);
    p.write("src/a.txt", "alpha\n");
    p.write(
        "key.hex",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    );
    let key = hotpass::report::provenance::signing_key(&p.path("key.hex")).unwrap();
    let public: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let keyid = hotpass::report::provenance::key_id(&key.verifying_key());
    let key_path = p.path("key.hex").display().to_string();
    p.run_env(
        &["run", "--provenance", "signed.json"],
        &[("HOTPASS_PROVENANCE_KEY", &key_path), ("SECRET", "x")],
    )
    .code(0);
    let env: serde_json::Value = serde_json::from_str(&p.read("signed.json")).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(env["signatures"][0]["keyid"], keyid.as_str());
    if let Some(s) = consumers(&p, "signed.json", &[&public, &keyid]) {
        assert_eq!(subjects(&s).len(), 2);
    }
    p.write("bad.key", "not a key");
    let r = p.run_env(
        &["run", "--provenance", "x.json"],
        &[
            (
                "HOTPASS_PROVENANCE_KEY",
                &p.path("bad.key").display().to_string(),
            ),
            ("SECRET", "x"),
        ],
    );
    assert_ne!(r.code, 0);
    assert_has(&r.stderr, "bad.key");
}

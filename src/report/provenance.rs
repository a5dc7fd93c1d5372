//! `--provenance FILE`: an in-toto Statement v1 with a SLSA Provenance v1
//! predicate for the outputs of a run, built from what the cache key
//! already covers — every input file, the tools, the `$NAME` inputs (by
//! name only), the commands. A cached output is attested as restored, with
//! the invocation of the run that built it. With `HOTPASS_PROVENANCE_KEY`
//! (an ed25519 private key), the statement is wrapped in a signed DSSE
//! envelope.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::config::Project;
use crate::graph::{InstanceGraph, InstanceId};
use crate::outcome::{RunResult, Status};

/// The build type: what the parameters below mean.
pub const BUILD_TYPE: &str =
    "https://github.com/hotpass/hotpass/blob/main/docs/provenance.md#build-type-v1";
const BUILDER: &str = concat!(
    "https://github.com/hotpass/hotpass/builder/v",
    env!("CARGO_PKG_VERSION")
);
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The hex sha256 of a file's content.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// What a run says about itself for its provenance.
pub struct Run<'a> {
    pub invocation: &'a str,
    pub selectors: &'a [String],
    pub partition: Option<&'a str>,
    pub backfill: Option<&'a str>,
    /// Instance names (globs allowed) whose outputs are the subjects;
    /// empty: the selected instances.
    pub subjects: &'a [String],
    pub started: jiff::Timestamp,
    pub finished: jiff::Timestamp,
}

fn rel(project: &Project, p: &Path) -> String {
    p.strip_prefix(&project.root)
        .map(crate::fileset::rel_string)
        .unwrap_or_else(|_| p.display().to_string())
}

/// The instances whose outputs are attested.
fn subject_instances(graph: &InstanceGraph, run: &Run) -> io::Result<Vec<InstanceId>> {
    if run.subjects.is_empty() {
        return Ok(graph.selected().to_vec());
    }
    let globs = crate::fileset::Patterns::new(run.subjects)
        .map_err(|(g, e)| io::Error::new(io::ErrorKind::InvalidInput, format!("`{g}`: {e}")))?;
    Ok(graph
        .iter()
        .filter(|(_, inst)| {
            let task = inst.name.split('@').next().unwrap_or(&inst.name);
            globs.matches(&inst.name) || globs.matches(task)
        })
        .map(|(id, _)| id)
        .collect())
}

/// The statement for a finished run.
pub fn statement(
    project: &Project,
    graph: &InstanceGraph,
    result: &RunResult,
    cache: &Cache,
    run: &Run,
) -> io::Result<Value> {
    let succeeded = |id: InstanceId| {
        matches!(
            result.outcomes[id.index()].status,
            Status::Ok | Status::Cached
        )
    };
    // Subjects: the declared outputs of the attested instances.
    // (name, file, blake3, annotations), hashed in parallel below.
    let mut subjects: BTreeMap<String, (std::path::PathBuf, String, Value)> = BTreeMap::new();
    for id in subject_instances(graph, run)? {
        if !succeeded(id) {
            continue;
        }
        let inst = graph.get(id);
        let o = &result.outcomes[id.index()];
        for out in cache.outputs_of(&project.root, inst)?.outputs {
            if out.link.is_some() {
                continue;
            }
            let path = project.root.join(&*crate::fileset::rel_path(&out.path));
            let mut annotations = json!({ "instance": inst.name });
            if o.status == Status::Cached {
                annotations["restored"] = json!(true);
                annotations["builtBy"] = json!(o.origin);
            }
            subjects.insert(out.path.clone(), (path, out.hash, annotations));
        }
    }
    // Resolved dependencies: every input file, tool and `$NAME` input of
    // every instance that succeeded, once each.
    // Each input file once: its content (hashed in parallel below), or
    // for a symlink not read through, its target text.
    let mut files: BTreeMap<String, Result<std::path::PathBuf, String>> = BTreeMap::new();
    let mut tools: BTreeMap<String, Value> = BTreeMap::new();
    let mut names: BTreeMap<String, Value> = BTreeMap::new();
    let mut byproducts = Vec::new();
    for (id, inst) in graph.iter() {
        let o = &result.outcomes[id.index()];
        byproducts.push(json!({
            "name": inst.name,
            "annotations": {
                "status": o.status.word(),
                "cacheKey": o.key,
                "restored": o.status == Status::Cached,
                "builtBy": if o.status == Status::Cached { json!(o.origin) } else { json!(run.invocation) },
                "commands": inst.resolved.commands,
            },
        }));
        if !succeeded(id) {
            continue;
        }
        let scan = cache.scan(inst, false)?;
        for f in &scan.files {
            let name = rel(project, &f.abs);
            if files.contains_key(&name) {
                continue;
            }
            let what = if f.is_content() {
                Ok(f.abs.clone())
            } else {
                Err(f
                    .link
                    .as_ref()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default())
            };
            files.insert(name, what);
        }
        for (tool, found) in &scan.tools {
            if tools.contains_key(tool) {
                continue;
            }
            let entry = match found {
                Some(t) => json!({
                    "name": format!("tool:{tool}"),
                    "uri": format!("file://{}", t.path.display()),
                    "digest": { "sha256": sha256_file(&t.path)?, "blake3": t.hash },
                }),
                None => {
                    json!({ "name": format!("tool:{tool}"), "annotations": { "found": false } })
                }
            };
            tools.insert(tool.clone(), entry);
        }
        for (name, _) in &scan.env_inputs {
            // The name only: a value never leaves.
            names.insert(
                name.clone(),
                json!({ "name": format!("env:{name}"), "annotations": { "kind": "environment variable" } }),
            );
        }
    }
    use rayon::prelude::*;
    let subjects: Vec<Value> = subjects
        .into_par_iter()
        .map(|(name, (path, blake3, annotations))| {
            Ok(json!({
                "name": name,
                "digest": { "sha256": sha256_file(&path)?, "blake3": blake3 },
                "annotations": annotations,
            }))
        })
        .collect::<io::Result<_>>()?;
    let files: Vec<Value> = files
        .into_par_iter()
        .map(|(name, what)| {
            let sha256 = match what {
                Ok(path) => sha256_file(&path)?,
                Err(target) => format!("{:x}", Sha256::digest(target.as_bytes())),
            };
            Ok(json!({ "name": name, "digest": { "sha256": sha256 } }))
        })
        .collect::<io::Result<_>>()?;
    let config: Vec<Value> = project
        .files
        .iter()
        .map(|f| {
            json!({
                "name": f.display,
                "digest": { "sha256": format!("{:x}", Sha256::digest(f.text.as_bytes())) },
            })
        })
        .collect();
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "selectors": run.selectors,
                "partition": run.partition,
                "backfill": run.backfill,
                "config": config,
            },
            "internalParameters": {
                "hotpassVersion": env!("CARGO_PKG_VERSION"),
                "cacheFormat": crate::cache::key::FORMAT_VERSION,
                "envMode": format!("{:?}", project.settings.env_mode).to_lowercase(),
            },
            "resolvedDependencies": files
                .into_iter()
                .chain(tools.into_values())
                .chain(names.into_values())
                .collect::<Vec<_>>(),
        },
        "runDetails": {
            "builder": { "id": BUILDER },
            "metadata": {
                "invocationId": run.invocation,
                "startedOn": run.started.to_string(),
                "finishedOn": run.finished.to_string(),
            },
            "byproducts": byproducts,
        },
    });
    Ok(json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": predicate,
    }))
}

/// Reads an ed25519 private key: PKCS#8 PEM (`openssl genpkey -algorithm
/// ed25519`), 32 raw bytes, or those 32 bytes as 64 hex digits.
pub fn signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || {
        format!(
            "{}: not an ed25519 private key (PKCS#8 PEM, 32 raw bytes, or 64 hex digits)",
            path.display()
        )
    };
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            return ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|_| bad());
        }
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; 32];
            for (i, k) in key.iter_mut().enumerate() {
                *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
            }
            return Ok(ed25519_dalek::SigningKey::from_bytes(&key));
        }
    }
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&key))
}

/// The key id of a public key: the hex sha256 of its 32 bytes.
pub fn key_id(key: &ed25519_dalek::VerifyingKey) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// DSSE's pre-authentication encoding of a payload.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope holding `statement`, signed with `key`.
pub fn envelope(statement: &Value, key: &ed25519_dalek::SigningKey) -> Value {
    use ed25519_dalek::Signer;
    let payload = serde_json::to_vec(statement).expect("serialisable");
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": b64.encode(&payload),
        "signatures": [{
            "keyid": key_id(&key.verifying_key()),
            "sig": b64.encode(sig.to_bytes()),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsse_signatures_verify_over_the_pae() {
        use ed25519_dalek::Verifier;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let env = envelope(&json!({ "a": 1 }), &key);
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
        let sig = b64
            .decode(env["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
        assert!(
            key.verifying_key()
                .verify(&pae(PAYLOAD_TYPE, &payload), &sig)
                .is_ok()
        );
        assert_eq!(
            pae("t", b"xy"),
            b"DSSEv1 1 t 2 xy".to_vec(),
            "the PAE of the DSSE spec"
        );
    }
}

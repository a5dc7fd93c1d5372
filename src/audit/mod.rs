//! The input audit: what a task's processes really touched (recorded by
//! [`notify`]), set against what its config declares, and the globs it
//! should declare.

pub mod notify;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use notify::{Access, Kind};
use serde::Serialize;

use crate::config::{Project, TaskKind};
use crate::fileset::{Ignored, Patterns, relative_to};
use crate::graph::{InstanceGraph, InstanceId};

/// Reads outside the project, counted per folder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Folder {
    pub folder: String,
    pub files: usize,
}

/// What the audit of one instance found. Paths inside the project are
/// relative to the task's `cwd`, as its globs are written.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instance: String,
    pub task: String,
    pub partition: Option<String>,
    /// Where the task is defined: `file:line:column`.
    pub defined_at: String,
    /// Files it read inside the project that no input glob covers (nor a
    /// dependency's outputs).
    pub undeclared_inputs: Vec<String>,
    /// Files it wrote inside the project that no output glob covers.
    pub undeclared_outputs: Vec<String>,
    /// Declared input files it never opened (a hint only).
    pub unread_inputs: Vec<String>,
    /// Files it read outside the project, per folder.
    pub outside_reads: Vec<Folder>,
    /// Files it read or wrote inside the project that git ignores (tool
    /// caches, installed dependencies, build state), per folder: not
    /// counted against it, since no glob would hash them; a lockfile or
    /// `tools` is what pins them.
    pub ignored_reads: Vec<Folder>,
    pub ignored_writes: Vec<Folder>,
    /// Globs to add to `inputs` and to `outputs`.
    pub suggested_inputs: Vec<String>,
    pub suggested_outputs: Vec<String>,
    /// Whether it read and wrote only what it declares.
    pub clean: bool,
    /// Whether the task succeeded.
    pub succeeded: bool,
    /// Whether its result was stored in the cache.
    pub stored: bool,
    /// Why it was not stored, when it succeeded but was not.
    pub not_stored: Option<String>,
}

/// The audit of a whole run, as `--audit=json` prints it.
#[derive(Debug, Serialize)]
pub struct Audit<'a> {
    /// Whether every audited instance is clean.
    pub clean: bool,
    pub instances: &'a [Report],
}

/// `path` with `.` and `..` taken out, lexically.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The path a recorded access names, as the file system resolves it: the
/// file itself when it exists, else its (resolved) folder and its name.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let path = normal(path);
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => match std::fs::canonicalize(dir) {
            Ok(d) => d.join(name),
            Err(_) => path,
        },
        _ => path,
    }
}

/// What the run did to one path, in order.
#[derive(Default)]
struct Seen {
    /// The first thing done to it was to read it (so it existed before).
    read_first: bool,
    read: bool,
    written: bool,
}

/// The folder a read outside the project is counted under: its first two
/// levels (`/usr/lib`, `/etc`), three under the home folder
/// (`/home/me/.cargo`).
fn folder_of(path: &Path, home: Option<&Path>) -> String {
    // The kernel's own trees are one folder each (not one per process).
    for tree in ["/proc", "/sys", "/dev"] {
        if path.starts_with(tree) {
            return tree.to_owned();
        }
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let depth = match home {
        Some(h) if dir.starts_with(h) => h.components().count() + 1,
        _ => 3, // the root and two names
    };
    let cut: PathBuf = dir.components().take(depth).collect();
    cut.display().to_string()
}

/// The project's `.gitignore` rules, read per folder as they are needed.
struct GitIgnored {
    root: PathBuf,
    rules: HashMap<PathBuf, Option<ignore::gitignore::Gitignore>>,
}

impl GitIgnored {
    fn new(root: &Path) -> GitIgnored {
        GitIgnored {
            root: root.to_path_buf(),
            rules: HashMap::new(),
        }
    }

    /// Whether git ignores `path` (under the root): the deepest
    /// `.gitignore` with a rule for it, or for a folder above it, decides.
    fn ignores(&mut self, path: &Path) -> bool {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if !d.starts_with(&self.root) {
                break;
            }
            let rules = self.rules.entry(d.to_path_buf()).or_insert_with(|| {
                let file = d.join(".gitignore");
                file.is_file().then(|| {
                    let mut b = ignore::gitignore::GitignoreBuilder::new(d);
                    b.add(&file);
                    b.build().ok()
                })?
            });
            if let Some(rules) = rules {
                match rules.matched_path_or_any_parents(path, false) {
                    ignore::Match::Ignore(_) => return true,
                    ignore::Match::Whitelist(_) => return false,
                    ignore::Match::None => {}
                }
            }
            dir = d.parent();
        }
        false
    }
}

/// The folder (relative to `base`, its first level) a git-ignored file is
/// counted under: `node_modules`, `.ruff_cache`; `.` for a file at the top.
fn ignored_folder(base: &Path, path: &Path) -> String {
    let rel = relative_to(base, path);
    match rel.split_once('/') {
        Some(("..", _)) | None => rel,
        Some((first, _)) => first.to_owned(),
    }
}

/// Folder counts, sorted by folder.
fn folders(counts: BTreeMap<String, usize>) -> Vec<Folder> {
    counts
        .into_iter()
        .map(|(folder, files)| Folder { folder, files })
        .collect()
}

/// Globs for `paths` (relative, `/`-separated): three or more files of one
/// folder with one extension become `folder/*.ext`; the rest stay exact.
pub fn suggest(paths: &[String], partition: Option<&str>) -> Vec<String> {
    let mut groups: BTreeMap<(String, String), Vec<&String>> = BTreeMap::new();
    for p in paths {
        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
        let ext = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => ext.to_owned(),
            _ => String::new(),
        };
        groups.entry((dir.to_owned(), ext)).or_default().push(p);
    }
    let mut out = BTreeSet::new();
    for ((dir, ext), files) in groups {
        if files.len() >= 3 && !ext.is_empty() {
            out.insert(match dir.as_str() {
                "" => format!("*.{ext}"),
                d => format!("{d}/*.{ext}"),
            });
        } else {
            out.extend(files.into_iter().cloned());
        }
    }
    // A partition's own value stands for every partition.
    out.into_iter()
        .map(|g| match partition {
            Some(p) if !p.is_empty() => g.replace(p, "{partition}"),
            _ => g,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Sets what `inst` did (`accesses`, in order) against its config.
/// `skip` lists folders hotpass owns (the cache).
pub fn classify(
    project: &Project,
    graph: &InstanceGraph,
    id: InstanceId,
    accesses: &[Access],
    skip: &[PathBuf],
) -> Report {
    let inst = graph.get(id);
    let task = project.task(inst.task);
    let r = &inst.resolved;
    let root = canonical(&project.root);
    let cwd = canonical(&r.cwd);
    let skip: Vec<PathBuf> = skip.iter().map(|s| canonical(s)).collect();

    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    let mut order: Vec<PathBuf> = Vec::new();
    // A path is opened again and again (a tool's libraries, its config):
    // resolve each once.
    let mut resolved: HashMap<&Path, PathBuf> = HashMap::new();
    for a in accesses {
        let path = resolved
            .entry(a.path.as_path())
            .or_insert_with(|| canonical(&a.path))
            .clone();
        let s = seen.entry(path.clone()).or_insert_with(|| {
            order.push(path.clone());
            Seen {
                read_first: matches!(a.kind, Kind::Read | Kind::Exec | Kind::ReadWrite),
                ..Seen::default()
            }
        });
        match a.kind {
            Kind::Read | Kind::Exec => s.read = true,
            Kind::ReadWrite => {
                s.read = true;
                s.written = true;
            }
            Kind::Write => s.written = true,
            Kind::Delete => {}
        }
    }

    // What the key covers: the input files as hotpass finds them.
    let declared: Vec<PathBuf> = Patterns::new(&r.input_globs)
        .ok()
        .and_then(|p| p.expand(&r.cwd, Ignored::Skip, &skip).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|f| canonical(&f.abs))
        .collect();
    let declared_set: HashSet<&PathBuf> = declared.iter().collect();
    let own_outputs = Patterns::new(&r.outputs).ok();
    let covered_by = |patterns: &Option<Patterns>, base: &Path, path: &Path| {
        patterns
            .as_ref()
            .is_some_and(|p| p.matches(&relative_to(base, path)))
    };
    // Reading what a dependency made is covered by that dependency's key.
    let mut dep_outputs: Vec<(PathBuf, Option<Patterns>)> = Vec::new();
    let mut stack: Vec<InstanceId> = inst.deps.clone();
    let mut visited: HashSet<InstanceId> = HashSet::new();
    while let Some(d) = stack.pop() {
        if !visited.insert(d) {
            continue;
        }
        let dep = graph.get(d);
        dep_outputs.push((
            canonical(&dep.resolved.cwd),
            Patterns::new(&dep.resolved.outputs).ok(),
        ));
        stack.extend(dep.deps.iter().copied());
    }
    // hotpass's own folders, and git's, are nobody's input.
    let owned = |p: &Path| {
        skip.iter().any(|s| p.starts_with(s)) || {
            let rel = p.strip_prefix(&root).unwrap_or(p);
            rel.components().next() == Some(Component::Normal(".git".as_ref()))
        }
    };
    let mut git = GitIgnored::new(&root);
    let is_file = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
    let name = |p: &Path| relative_to(&cwd, p);

    let home = std::env::var_os("HOME").map(|h| canonical(Path::new(&h)));
    let mut undeclared_inputs = Vec::new();
    let mut undeclared_outputs = Vec::new();
    let mut outside: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ignored_reads, mut ignored_writes) = (BTreeMap::new(), BTreeMap::new());
    for path in &order {
        let s = &seen[path];
        if !path.starts_with(&root) {
            if s.read && is_file(path) {
                *outside.entry(folder_of(path, home.as_deref())).or_default() += 1;
            }
            continue;
        }
        if owned(path) {
            continue;
        }
        let exists = is_file(path);
        if s.read_first
            && exists
            && !declared_set.contains(path)
            && !covered_by(&own_outputs, &cwd, path)
            && !dep_outputs
                .iter()
                .any(|(base, p)| covered_by(p, base, path))
        {
            if git.ignores(path) {
                *ignored_reads.entry(ignored_folder(&cwd, path)).or_default() += 1;
            } else {
                undeclared_inputs.push(name(path));
            }
        }
        let made = exists || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
        if s.written && made && !covered_by(&own_outputs, &cwd, path) {
            if git.ignores(path) {
                *ignored_writes
                    .entry(ignored_folder(&cwd, path))
                    .or_default() += 1;
            } else {
                undeclared_outputs.push(name(path));
            }
        }
    }
    let unread_inputs: Vec<String> = declared
        .iter()
        .filter(|p| !seen.get(*p).is_some_and(|s| s.read))
        .map(|p| name(p))
        .collect();
    undeclared_inputs.sort();
    undeclared_outputs.sort();
    let partition = inst.partition.as_deref();
    let file = &project.files[task.origin.file];
    Report {
        instance: inst.name.clone(),
        task: task.name.clone(),
        partition: inst.partition.clone(),
        defined_at: file.location(task.origin.span.start),
        suggested_inputs: suggest(&undeclared_inputs, partition),
        suggested_outputs: suggest(&undeclared_outputs, partition),
        clean: undeclared_inputs.is_empty() && undeclared_outputs.is_empty(),
        undeclared_inputs,
        undeclared_outputs,
        unread_inputs,
        outside_reads: folders(outside),
        ignored_reads: folders(ignored_reads),
        ignored_writes: folders(ignored_writes),
        succeeded: false,
        stored: false,
        not_stored: None,
    }
}

/// `[tasks.NAME]` or `[gates.NAME]`, quoted where TOML needs it.
fn table_header(project: &Project, task: &str) -> String {
    let (section, name) = match project.find(task).map(|id| project.task(id).kind) {
        Some(TaskKind::Gate) => ("gates", task.strip_prefix("gate:").unwrap_or(task)),
        _ => ("tasks", task),
    };
    let bare = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("[{section}.{name}]")
    } else {
        format!("[{section}.\"{name}\"]")
    }
}

/// "1 file", "2 files".
fn files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

/// A TOML array of strings.
fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| toml::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

impl Report {
    /// Whether it read files no input covers: its key is incomplete.
    pub fn has_undeclared_inputs(&self) -> bool {
        !self.undeclared_inputs.is_empty()
    }

    /// The report as text, ending with the config lines to paste.
    pub fn render(&self, project: &Project) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let outside: usize = self.outside_reads.iter().map(|f| f.files).sum();
        let failed = if self.succeeded {
            ""
        } else {
            ", which failed: what it touched before it stopped"
        };
        if self.clean {
            let _ = writeln!(
                s,
                "audit {}{failed}: clean (it read only declared inputs and wrote only declared \
                 outputs; {} read outside the project)",
                self.instance,
                files(outside)
            );
        } else {
            let _ = writeln!(
                s,
                "audit {}{failed} (defined at {}):",
                self.instance, self.defined_at
            );
        }
        /// More than this many unread inputs are counted, not listed.
        const SHOWN: usize = 20;
        let mut list = |title: &str, items: &[String]| {
            if !items.is_empty() {
                let _ = writeln!(s, "  {title}:");
                for i in items.iter().take(SHOWN) {
                    let _ = writeln!(s, "    {i}");
                }
                if items.len() > SHOWN {
                    let _ = writeln!(s, "    … and {} more", items.len() - SHOWN);
                }
            }
        };
        list(
            "undeclared inputs (read, but no input glob covers them)",
            &self.undeclared_inputs,
        );
        list(
            "undeclared outputs (written, but no output glob covers them)",
            &self.undeclared_outputs,
        );
        if self.clean {
            return s; // the details are in the JSON
        }
        list(
            "declared inputs never read (a hint: they may be read another way)",
            &self.unread_inputs,
        );
        let mut counted = |title: &str, list: &[Folder]| {
            if list.is_empty() {
                return;
            }
            let _ = writeln!(s, "  {title}:");
            let width = list.iter().map(|f| f.folder.len()).max().unwrap_or(0);
            for f in list {
                let _ = writeln!(s, "    {:width$}  {}", f.folder, files(f.files));
            }
        };
        counted(
            "read files git ignores (caches, dependencies: pin them with a lockfile or `tools`)",
            &self.ignored_reads,
        );
        counted("wrote files git ignores", &self.ignored_writes);
        counted("read outside the project", &self.outside_reads);
        if let Some(why) = &self.not_stored {
            let _ = writeln!(s, "  not stored: {why}");
        }
        {
            let task = project.find(&self.task).map(|id| project.task(id));
            let file = task.map_or("hotpass.toml".to_owned(), |t| {
                project.files[t.origin.file].display.clone()
            });
            let _ = writeln!(
                s,
                "  suggested edit, in {file} under {}:",
                table_header(project, &self.task)
            );
            if !self.suggested_inputs.is_empty() {
                let mut all: Vec<String> = task
                    .map(|t| t.inputs.iter().map(|i| i.written()).collect())
                    .unwrap_or_default();
                all.extend(self.suggested_inputs.iter().cloned());
                let _ = writeln!(s, "    inputs = {}", toml_array(&all));
            }
            if !self.suggested_outputs.is_empty() {
                let mut all: Vec<String> = task.map(|t| t.outputs.clone()).unwrap_or_default();
                all.extend(self.suggested_outputs.iter().cloned());
                let _ = writeln!(s, "    outputs = {}", toml_array(&all));
            }
        }
        s
    }
}

/// The audit's data, as `--audit=json` prints it.
pub fn to_json(reports: &[Report]) -> String {
    let audit = Audit {
        clean: reports.iter().all(|r| r.clean),
        instances: reports,
    };
    serde_json::to_string_pretty(&audit).expect("serialisable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_group_three_files_of_a_kind() {
        let paths: Vec<String> = ["docs/a.md", "docs/b.md", "docs/c.md", "README.md", "x/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(suggest(&paths, None), vec!["README.md", "docs/*.md", "x/y"]);
    }

    #[test]
    fn suggestions_name_the_partition() {
        let paths = vec!["data/2025-01-02.csv".to_owned()];
        assert_eq!(
            suggest(&paths, Some("2025-01-02")),
            vec!["data/{partition}.csv"]
        );
    }

    #[test]
    fn outside_reads_count_per_folder() {
        assert_eq!(folder_of(Path::new("/usr/lib/x/libc.so"), None), "/usr/lib");
        assert_eq!(folder_of(Path::new("/proc/4242/maps"), None), "/proc");
        assert_eq!(folder_of(Path::new("/etc/ld.so.cache"), None), "/etc");
        assert_eq!(
            folder_of(
                Path::new("/home/me/.cargo/registry/x.rs"),
                Some(Path::new("/home/me"))
            ),
            "/home/me/.cargo"
        );
    }

    #[test]
    fn paths_lose_dots_lexically() {
        assert_eq!(normal(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
    }
}

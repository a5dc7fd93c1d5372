//! File sets: expand a task's `inputs` or `outputs` globs, relative to a
//! folder, into a sorted list of files.
//!
//! Patterns are globs anchored at the base folder (`*` stays within one path
//! component, `**` crosses any number), `!pattern` excludes, and a plain path
//! names one file (or, for a folder, everything under it). When walking, files
//! that git ignores are skipped unless a pattern names them exactly.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::warning::Warning;

/// The folder [`lstat`] looks up relative paths from: the process's
/// working folder as the current run read it (see [`set_working_folder`]).
static WORKING_FOLDER: std::sync::atomic::AtomicPtr<PathBuf> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// Tells [`lstat`] the process's working folder, as read at the start of a
/// run (`getcwd`: physical). Each call keeps a few bytes for the rest of
/// the process: a lookup on another thread may still be reading the last.
pub fn set_working_folder(cwd: &Path) {
    let new = Box::into_raw(Box::new(cwd.to_path_buf()));
    WORKING_FOLDER.store(new, std::sync::atomic::Ordering::Release);
}

/// The metadata of `path` itself (a symlink is not followed), looked up
/// by its path relative to the working folder when it is under it: the
/// kernel then walks two or three names instead of the whole absolute path,
/// and a no-op looks up every input and output this way. Before a run has
/// said what its working folder is, the whole path is used.
pub fn lstat(path: &Path) -> io::Result<Metadata> {
    use std::os::unix::ffi::OsStrExt;
    let cwd = WORKING_FOLDER.load(std::sync::atomic::Ordering::Acquire);
    // SAFETY: a pointer `set_working_folder` leaked, never freed, or null.
    if let Some(cwd) = unsafe { cwd.as_ref() } {
        let (p, c) = (path.as_os_str().as_bytes(), cwd.as_os_str().as_bytes());
        // Under `cwd` as bytes: what follows resolves from the working
        // folder exactly as the whole path does (`cwd` is physical, so even
        // a `..` after it lands in the same place).
        if p.len() > c.len() + 1 && p.starts_with(c) && p[c.len()] == b'/' && c != b"/" {
            let rel = std::ffi::OsStr::from_bytes(&p[c.len() + 1..]);
            return std::fs::symlink_metadata(rel);
        }
    }
    std::fs::symlink_metadata(path)
}

/// `base.join(rel)`, allocated once (a join allocates, then grows).
pub fn join(base: &Path, rel: &str) -> PathBuf {
    let mut p = PathBuf::with_capacity(base.as_os_str().len() + 1 + rel.len());
    p.push(base);
    p.push(rel);
    p
}

/// A compiled set of include and exclude patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    include: GlobSet,
    exclude: GlobSet,
    /// Patterns without glob characters: named exactly.
    exact: Vec<String>,
    /// Folders (relative, `/`-separated, "" for the base) to walk.
    roots: Vec<String>,
    /// For each glob in `include`, its position in the patterns given.
    include_at: Vec<usize>,
    /// For each entry of `exact`, its position in the patterns given.
    exact_at: Vec<usize>,
}

/// One file found by [`Patterns::expand`].
#[derive(Debug, Clone)]
pub struct FoundFile {
    /// Path relative to the base folder, with `/` separators.
    pub rel: String,
    /// Absolute path.
    pub abs: PathBuf,
    /// The file's metadata: of the file a symlink names when that is a
    /// regular file, else of the symlink itself.
    pub meta: Metadata,
    /// For a symlink, the path it holds (its target text).
    pub link: Option<PathBuf>,
}

impl FoundFile {
    /// Describes `abs` (found at `rel`) if it is a regular file or a
    /// symlink. A symlink is never followed to anything but a regular file,
    /// so a link into `/dev` or to a FIFO is only its target text. A FIFO,
    /// socket or device is skipped with a warning: reading one could block
    /// forever or never end.
    fn at(rel: String, abs: PathBuf, own: Metadata) -> Option<FoundFile> {
        if own.file_type().is_symlink() {
            let link = std::fs::read_link(&abs).ok()?;
            let meta = match std::fs::metadata(&abs) {
                Ok(m) if m.is_file() => m,
                _ => own,
            };
            return Some(FoundFile {
                rel,
                abs,
                meta,
                link: Some(link),
            });
        }
        if !own.is_file() {
            Warning::NotAFile { path: abs }.emit();
            return None;
        }
        Some(FoundFile {
            rel,
            abs,
            meta: own,
            link: None,
        })
    }

    /// Whether the content hotpass reads is a regular file's (a file, or a
    /// symlink to one) rather than a symlink's target text.
    pub fn is_content(&self) -> bool {
        self.meta.is_file()
    }
}

/// The hash standing for a symlink that is not read through: its target
/// text, in a domain no file's content hash shares.
pub fn link_hash(target: &Path) -> [u8; 32] {
    use std::os::unix::ffi::OsStrExt;
    let mut h = blake3::Hasher::new_derive_key("hotpass symlink target");
    h.update(target.as_os_str().as_bytes());
    *h.finalize().as_bytes()
}

/// Content hashes of found files, in order: a regular file's (or a
/// symlink's to one) through the memo, any other symlink's target text.
pub fn hash_found(memo: &crate::hash::Memo, files: &[FoundFile]) -> io::Result<Vec<[u8; 32]>> {
    let pairs: Vec<(&Path, &Metadata)> = files
        .iter()
        .filter(|f| f.is_content())
        .map(|f| (f.abs.as_path(), &f.meta))
        .collect();
    let mut content = memo.hash_files(&pairs)?.into_iter();
    Ok(files
        .iter()
        .map(|f| match &f.link {
            Some(target) if !f.is_content() => link_hash(target),
            _ => content.next().expect("one hash per regular file"),
        })
        .collect())
}

/// Whether a walk honours `.gitignore` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Skip files that git ignores (inputs, includes).
    Skip,
    /// Include everything (outputs are often git-ignored build products).
    Include,
}

/// Whether `rel` is `path` or under it (`/`-separated, without allocating).
fn is_at_or_under(rel: &str, path: &str) -> bool {
    rel.strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Normalises a user pattern: strips a leading `./`. An absolute pattern
/// stays absolute: it names the files it names, wherever they are.
fn normalise(p: &str) -> &str {
    let mut p = p.trim();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// Whether the walk of root `outer` covers the walk of root `inner`. The
/// base ("") covers only what lies under it, not an absolute or `..` root.
fn covers(outer: &str, inner: &str) -> bool {
    if outer.is_empty() {
        return !inner.starts_with('/') && inner != ".." && !inner.starts_with("../");
    }
    inner == outer || is_at_or_under(inner, outer) || (outer == "/" && inner.starts_with('/'))
}

/// The path a pattern names before its first glob character, under `cwd`:
/// `dist/**` is `cwd/dist`, `out/*.txt` is `cwd/out`, `*.o` is `cwd`.
pub fn static_prefix(cwd: &Path, pattern: &str) -> PathBuf {
    let mut p = cwd.to_path_buf();
    for part in pattern.trim_start_matches("./").split('/') {
        if part.contains(['*', '?', '[', '{']) {
            break;
        }
        p.push(part);
    }
    p
}

/// `path` relative to `base`, as input patterns spell it: `a/b` under
/// `base`, `../x` beside it (lexically, both absolute), or `path` itself
/// when they share nothing but the root.
pub fn relative_to(base: &Path, path: &Path) -> String {
    if let Ok(rel) = path.strip_prefix(base) {
        return rel_string(rel);
    }
    let (b, p): (Vec<_>, Vec<_>) = (base.components().collect(), path.components().collect());
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    if common <= 1 {
        return rel_string(path);
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    rel.extend(&p[common..]);
    rel_string(&rel)
}

impl Patterns {
    /// Compiles patterns; the error names the pattern that is not a glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, (String, globset::Error)> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut exact = Vec::new();
        let mut roots: Vec<String> = Vec::new();
        let (mut include_at, mut exact_at) = (Vec::new(), Vec::new());
        let mut any_exclude = false;
        for (at, raw) in patterns.iter().enumerate() {
            let raw = raw.as_ref();
            if let Some(neg) = raw.strip_prefix('!') {
                any_exclude = true;
                let p = normalise(neg);
                let g = glob(p).map_err(|e| (raw.to_owned(), e))?;
                exclude.add(g);
                // An excluded folder excludes what is under it.
                if !has_meta(p) || p.ends_with("/**") {
                    let under = format!("{}/**", p.trim_end_matches("/**"));
                    exclude.add(glob(&under).map_err(|e| (raw.to_owned(), e))?);
                }
                continue;
            }
            let p = normalise(raw);
            if !has_meta(p) {
                exact.push(p.to_owned());
                exact_at.push(at);
                continue;
            }
            include.add(glob(p).map_err(|e| (raw.to_owned(), e))?);
            include_at.push(at);
            let prefix: Vec<&str> = p
                .split('/')
                .take_while(|c| !has_meta(c))
                .collect::<Vec<_>>();
            // The last component of a prefix-only pattern is a file name.
            let root = prefix.join("/");
            roots.push(if root.is_empty() && p.starts_with('/') {
                "/".to_owned()
            } else {
                root
            });
        }
        roots.sort();
        roots.dedup();
        // Drop roots nested in another root: one walk covers both.
        let mut kept: Vec<String> = Vec::new();
        for r in roots {
            if !kept.iter().any(|k| covers(k, &r)) {
                kept.push(r);
            }
        }
        // Most tasks name their inputs exactly: no glob set to build then.
        Ok(Patterns {
            include: if include_at.is_empty() {
                GlobSet::empty()
            } else {
                include.build().map_err(|e| (String::new(), e))?
            },
            exclude: if any_exclude {
                exclude.build().map_err(|e| (String::new(), e))?
            } else {
                GlobSet::empty()
            },
            exact,
            roots: kept,
            include_at,
            exact_at,
        })
    }

    /// The positions (in the patterns given) of the include patterns that
    /// match none of `found`. Stops testing a pattern once it has matched.
    pub fn unmatched(&self, found: &[FoundFile]) -> Vec<usize> {
        let mut glob_seen = vec![false; self.include_at.len()];
        let mut exact_seen = vec![false; self.exact.len()];
        let mut left = glob_seen.len() + exact_seen.len();
        for f in found {
            if left == 0 {
                break;
            }
            if glob_seen.iter().any(|s| !s) {
                for i in self.include.matches(&*rel_path(&f.rel)) {
                    if !glob_seen[i] {
                        glob_seen[i] = true;
                        left -= 1;
                    }
                }
            }
            for (i, e) in self.exact.iter().enumerate() {
                if !exact_seen[i] && is_at_or_under(&f.rel, e) {
                    exact_seen[i] = true;
                    left -= 1;
                }
            }
        }
        let mut out: Vec<usize> = (glob_seen.iter().zip(&self.include_at))
            .chain(exact_seen.iter().zip(&self.exact_at))
            .filter(|(seen, _)| !**seen)
            .map(|(_, at)| *at)
            .collect();
        out.sort();
        out
    }

    /// The position (in the patterns given) of the first include pattern
    /// that matches `rel`.
    pub fn first_match(&self, rel: &str) -> Option<usize> {
        let globs = self
            .include
            .matches(&*rel_path(rel))
            .into_iter()
            .map(|i| self.include_at[i]);
        let exact = self
            .exact
            .iter()
            .zip(&self.exact_at)
            .filter(|(e, _)| is_at_or_under(rel, e))
            .map(|(_, at)| *at);
        globs.chain(exact).min()
    }

    /// Checks one pattern's syntax without compiling a matcher (cheap enough
    /// to run on every pattern of a large config).
    pub fn check(pattern: &str) -> Result<(), globset::Error> {
        glob(normalise(pattern.strip_prefix('!').unwrap_or(pattern))).map(|_| ())
    }

    /// Whether `rel` (relative to the base, `/`-separated) is in the set,
    /// leaving git-ignore rules aside.
    pub fn matches(&self, rel: &str) -> bool {
        let path = rel_path(rel);
        if self.exclude.is_match(&*path) {
            return false;
        }
        if self.include.is_match(&*path) {
            return true;
        }
        self.exact.iter().any(|e| is_at_or_under(rel, e))
    }

    /// Whether `rel` is named exactly by a pattern (so git-ignore rules do not apply).
    pub fn names_exactly(&self, rel: &str) -> bool {
        self.exact.iter().any(|e| rel == e)
    }

    /// Whether there are no include patterns at all.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.roots.is_empty()
    }

    /// The folders (relative to the base) that a walk must cover, for watching.
    pub fn roots(&self) -> impl Iterator<Item = String> + '_ {
        self.roots
            .iter()
            .cloned()
            .chain(self.exact.iter().map(|e| match e.rsplit_once('/') {
                Some(("", _)) => "/".to_owned(),
                Some((dir, _)) => dir.to_owned(),
                None => String::new(),
            }))
    }

    /// Every file under `base` in the set, sorted by relative path.
    /// `skip` lists absolute folders never to enter (the cache folder).
    pub fn expand(
        &self,
        base: &Path,
        ignored: Ignored,
        skip: &[PathBuf],
    ) -> io::Result<Vec<FoundFile>> {
        // Files as met; sorted and deduplicated at the end (most tasks name
        // one file or a few: no map to build for them).
        let mut found: Vec<FoundFile> = Vec::new();
        for e in &self.exact {
            if self.exclude.is_match(e) {
                continue;
            }
            let abs = join(base, e);
            match lstat(&abs) {
                Ok(own)
                    if own.is_dir()
                        || own.file_type().is_symlink()
                            && std::fs::metadata(&abs).is_ok_and(|m| m.is_dir()) =>
                {
                    walk(base, e, ignored, skip, &mut |rel, abs, meta| {
                        if !self.exclude.is_match(&*rel_path(&rel)) {
                            found.extend(FoundFile::at(rel, abs, meta));
                        }
                    })?;
                }
                Ok(own) => {
                    found.extend(FoundFile::at(e.clone(), abs, own));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) if err.kind() == io::ErrorKind::NotADirectory => {}
                // A name longer than the file system allows names no file.
                Err(err) if err.raw_os_error() == Some(libc::ENAMETOOLONG) => {}
                Err(err) => return Err(crate::hash::with_path(&abs, err)),
            }
        }
        for root in &self.roots {
            walk(base, root, ignored, skip, &mut |rel, abs, meta| {
                let path = rel_path(&rel);
                if self.include.is_match(&*path) && !self.exclude.is_match(&*path) {
                    found.extend(FoundFile::at(rel, abs, meta));
                }
            })?;
        }
        // By path; a path met twice (named, and under a walked folder) once.
        if !found.is_sorted_by(|a, b| a.rel < b.rel) {
            found.sort_by(|a, b| a.rel.cmp(&b.rel));
            found.dedup_by(|a, b| a.rel == b.rel);
        }
        Ok(found)
    }
}

fn walk(
    base: &Path,
    root: &str,
    ignored: Ignored,
    skip: &[PathBuf],
    visit: &mut dyn FnMut(String, PathBuf, Metadata),
) -> io::Result<()> {
    let start = if root.is_empty() {
        base.to_path_buf()
    } else {
        base.join(root)
    };
    match std::fs::metadata(&start) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            // A prefix that is a file: the glob may still match it.
            if let Ok(own) = std::fs::symlink_metadata(&start) {
                visit(root.to_owned(), start, own);
            }
            return Ok(());
        }
        Err(_) => return Ok(()),
    }
    let respect = ignored == Ignored::Skip;
    let skip_dirs: Vec<PathBuf> = skip.to_vec();
    let walker = ignore::WalkBuilder::new(&start)
        .standard_filters(false)
        .hidden(false)
        .git_ignore(respect)
        .git_exclude(respect)
        .require_git(false)
        .parents(respect)
        .follow_links(false)
        .filter_entry(move |e| {
            if e.file_name() == ".git" {
                return false;
            }
            !skip_dirs.iter().any(|s| e.path() == s)
        })
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                tracing::debug!(%err, "skipping unreadable entry");
                continue;
            }
        };
        let Some(ft) = entry.file_type() else {
            continue;
        };
        if ft.is_dir() {
            continue;
        }
        let Ok(own) = entry.metadata() else {
            continue;
        };
        if entry
            .file_name()
            .to_str()
            .is_some_and(crate::atomic::is_temp)
        {
            continue; // a file hotpass is writing (or was, when killed)
        }
        // Named as the pattern named its root: under the base, beside it
        // (`../shared/…`) or from the file system's root.
        let Ok(under) = entry.path().strip_prefix(&start) else {
            continue;
        };
        let rel = rel_string(&Path::new(root).join(under));
        visit(rel, entry.into_path(), own);
    }
    Ok(())
}

/// A relative path as a `/`-separated string.
///
/// A path that is valid UTF-8 is kept as it reads. Any other (file names
/// are bytes) is written `\0` and the hex of its bytes: no Unix path
/// contains NUL, so no two paths share a string, and [`rel_path`] gives the
/// bytes back. Keys and manifests hold these strings.
pub fn rel_string(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::new();
    for (i, c) in p.components().enumerate() {
        if i > 0 && !s.ends_with('/') {
            s.push('/');
        }
        match c.as_os_str().to_str() {
            Some(text) => s.push_str(text),
            None => {
                let mut bytes = Vec::new();
                for (i, c) in p.components().enumerate() {
                    if i > 0 && bytes.last() != Some(&b'/') {
                        bytes.push(b'/');
                    }
                    bytes.extend_from_slice(c.as_os_str().as_bytes());
                }
                let mut hex = String::with_capacity(1 + 2 * bytes.len());
                hex.push('\0');
                for b in bytes {
                    hex.push_str(&format!("{b:02x}"));
                }
                return hex;
            }
        }
    }
    s
}

/// The path a [`rel_string`] stands for.
pub fn rel_path(s: &str) -> std::borrow::Cow<'_, Path> {
    use std::os::unix::ffi::OsStringExt;
    let Some(hex) = s.strip_prefix('\0') else {
        return std::borrow::Cow::Borrowed(Path::new(s));
    };
    let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) => std::borrow::Cow::Owned(PathBuf::from(std::ffi::OsString::from_vec(b))),
        None => std::borrow::Cow::Borrowed(Path::new(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    fn rels(files: Vec<FoundFile>) -> Vec<String> {
        files.into_iter().map(|f| f.rel).collect()
    }

    /// A path under the working folder is the same file looked up either
    /// way; one elsewhere, or the folder itself, is looked up whole.
    #[test]
    fn join_is_paths_join() {
        for base in ["/r", "/r/", "r", ""] {
            for rel in ["a", "a/b", "", "/abs", "./a", "a/"] {
                assert_eq!(join(Path::new(base), rel), Path::new(base).join(rel));
            }
        }
    }

    #[test]
    fn lstat_relative_to_the_working_folder_finds_the_same_files() {
        use std::os::unix::fs::MetadataExt;
        let cwd = std::env::current_dir().unwrap();
        set_working_folder(&cwd);
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "f");
        for path in [
            cwd.join("Cargo.toml"),
            cwd.join("src/../Cargo.toml"),
            t.path().join("f"),
            cwd.clone(),
        ] {
            let (a, b) = (
                lstat(&path).unwrap(),
                std::fs::symlink_metadata(&path).unwrap(),
            );
            assert_eq!((a.ino(), a.len()), (b.ino(), b.len()), "{}", path.display());
        }
        assert!(lstat(&cwd.join("no such file")).is_err());
    }

    #[test]
    fn globs_are_anchored_and_excludes_apply() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "src/a.rs",
            "src/deep/b.rs",
            "src/c.txt",
            "top.rs",
            "src/gen/x.rs",
        ] {
            touch(t.path(), f);
        }
        let p = Patterns::new(&["src/**/*.rs", "!src/gen"]).unwrap();
        let got = rels(p.expand(t.path(), Ignored::Skip, &[]).unwrap());
        assert_eq!(got, vec!["src/a.rs", "src/deep/b.rs"]);
        let p = Patterns::new(&["*.rs"]).unwrap();
        assert_eq!(
            rels(p.expand(t.path(), Ignored::Skip, &[]).unwrap()),
            vec!["top.rs"]
        );
    }

    #[test]
    fn gitignored_files_are_skipped_unless_named_exactly() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "src/a.rs");
        touch(t.path(), "src/secret.rs");
        std::fs::write(t.path().join(".gitignore"), "secret.rs\n").unwrap();
        let p = Patterns::new(&["src/*.rs"]).unwrap();
        assert_eq!(
            rels(p.expand(t.path(), Ignored::Skip, &[]).unwrap()),
            vec!["src/a.rs"]
        );
        let p = Patterns::new(&["src/*.rs", "src/secret.rs"]).unwrap();
        assert_eq!(
            rels(p.expand(t.path(), Ignored::Skip, &[]).unwrap()),
            vec!["src/a.rs", "src/secret.rs"]
        );
        let p = Patterns::new(&["src/*.rs"]).unwrap();
        assert_eq!(p.expand(t.path(), Ignored::Include, &[]).unwrap().len(), 2);
    }

    #[test]
    fn a_named_folder_means_everything_under_it() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "data/x/1.csv");
        touch(t.path(), "data/2.csv");
        let p = Patterns::new(&["data"]).unwrap();
        assert_eq!(
            rels(p.expand(t.path(), Ignored::Skip, &[]).unwrap()),
            vec!["data/2.csv", "data/x/1.csv"]
        );
        assert!(p.matches("data/x/1.csv"));
        assert!(!p.matches("database.csv"));
    }

    #[test]
    fn patterns_that_match_nothing_are_named_by_position() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "src/a.py");
        touch(t.path(), "pyproject.toml");
        let p = Patterns::new(&[
            "scr/**/*.py",
            "!src/x",
            "src/**/*.py",
            "pyproject.tml",
            "pyproject.toml",
        ])
        .unwrap();
        let found = p.expand(t.path(), Ignored::Skip, &[]).unwrap();
        assert_eq!(p.unmatched(&found), vec![0, 3]);
        assert_eq!(p.first_match("src/a.py"), Some(2));
        assert_eq!(p.first_match("pyproject.toml"), Some(4));
    }

    #[test]
    fn paths_that_are_not_utf8_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
        let worse = std::ffi::OsStr::from_bytes(b"bad\xfe.txt");
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join("data").join(bad), "1").unwrap();
        std::fs::write(t.path().join("data").join(worse), "2").unwrap();
        let p = Patterns::new(&["data/*.txt"]).unwrap();
        let found = p.expand(t.path(), Ignored::Skip, &[]).unwrap();
        assert_eq!(found.len(), 2, "matched by their bytes");
        assert_ne!(found[0].rel, found[1].rel, "two names, two strings");
        for f in &found {
            assert!(f.rel.starts_with('\0'));
            assert_eq!(t.path().join(rel_path(&f.rel)), f.abs);
            assert!(p.matches(&f.rel));
        }
        assert_eq!(rel_string(Path::new("plain/ok.txt")), "plain/ok.txt");
    }

    #[test]
    fn skipped_folders_are_not_entered() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "a.txt");
        touch(t.path(), "cache/b.txt");
        let p = Patterns::new(&["**/*.txt"]).unwrap();
        let got = rels(
            p.expand(t.path(), Ignored::Skip, &[t.path().join("cache")])
                .unwrap(),
        );
        assert_eq!(got, vec!["a.txt"]);
    }

    #[test]
    fn paths_beside_or_above_the_base_are_named_as_patterns_name_them() {
        let base = Path::new("/p/app");
        assert_eq!(relative_to(base, Path::new("/p/app/src/a.rs")), "src/a.rs");
        assert_eq!(
            relative_to(base, Path::new("/p/shared/x.md")),
            "../shared/x.md"
        );
        assert_eq!(
            relative_to(base, Path::new("/etc/os-release")),
            "/etc/os-release"
        );
        assert_eq!(rel_string(Path::new("/etc/os-release")), "/etc/os-release");
        assert!(covers("", "src") && !covers("", "../shared") && !covers("", "/etc"));
        assert!(covers("/", "/etc") && covers("src", "src/a") && !covers("src", "srcx"));
    }

    #[test]
    fn absolute_and_escaping_patterns_find_the_files_they_name() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "app/in.txt");
        touch(t.path(), "shared/a.md");
        touch(t.path(), "shared/b.txt");
        let base = t.path().join("app");
        let abs = format!("{}/shared/*.txt", t.path().display());
        let p = Patterns::new(&["in.txt", "../shared/*.md", abs.as_str()]).unwrap();
        let got = rels(p.expand(&base, Ignored::Skip, &[]).unwrap());
        assert_eq!(
            got,
            vec![
                "../shared/a.md".to_owned(),
                format!("{}/shared/b.txt", t.path().display()),
                "in.txt".to_owned(),
            ]
        );
    }
}

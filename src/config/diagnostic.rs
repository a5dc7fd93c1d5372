//! Configuration problems as miette diagnostics: each one names the file and
//! points at the offending span with a label, and says what to do next.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// What kind of problem a [`Problem`] is; each kind has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is not valid TOML.
    Syntax,
    /// A field that hotpass does not know (usually a typo).
    UnknownField,
    /// A field holds the wrong type of value.
    WrongType,
    /// `deps` names a task that does not exist.
    UnknownDep,
    /// The same task is defined twice (possibly across files).
    DuplicateTask,
    /// Tasks depend on each other in a loop.
    Cycle,
    /// A task name with characters outside the allowed set.
    InvalidName,
    /// A `timeout` that is not a duration.
    BadTimeout,
    /// Any other value that parses but makes no sense.
    InvalidValue,
    /// Partition declarations that do not fit together.
    Partitions,
    /// An input glob that matches no file, under `--strict`.
    EmptyGlob,
}

impl ProblemKind {
    fn code(self) -> &'static str {
        match self {
            ProblemKind::Syntax => "hotpass::config::syntax",
            ProblemKind::UnknownField => "hotpass::config::unknown_field",
            ProblemKind::WrongType => "hotpass::config::wrong_type",
            ProblemKind::UnknownDep => "hotpass::config::unknown_dep",
            ProblemKind::DuplicateTask => "hotpass::config::duplicate_task",
            ProblemKind::Cycle => "hotpass::config::cycle",
            ProblemKind::InvalidName => "hotpass::config::invalid_name",
            ProblemKind::BadTimeout => "hotpass::config::bad_timeout",
            ProblemKind::InvalidValue => "hotpass::config::invalid_value",
            ProblemKind::Partitions => "hotpass::config::partitions",
            ProblemKind::EmptyGlob => "hotpass::config::empty_glob",
        }
    }
}

/// A configuration file's name (as shown to the user) and text.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// Path of the file on disk.
    pub path: PathBuf,
    /// Name shown in diagnostics: the path relative to the project root.
    pub display: String,
    /// The whole text, shared by every diagnostic pointing into it.
    pub text: Arc<String>,
}

/// Lines longer than this are not drawn in a diagnostic.
const MAX_SNIPPET_LINE: usize = 2000;

impl SourceFile {
    /// The length of the line holding byte `offset`.
    fn line_len(&self, offset: usize) -> usize {
        let text = self.text.as_bytes();
        let at = offset.min(text.len());
        let start = text[..at]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let end = text[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(text.len(), |i| at + i);
        end - start
    }

    /// `file:line:column` of a byte offset, for messages outside diagnostics.
    pub fn location(&self, offset: usize) -> String {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{column}", self.display)
    }

    fn named(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(self.display.clone(), self.text.clone()).with_language("toml")
    }
}

/// One problem in the configuration, pointing into one file.
#[derive(Debug)]
pub struct Problem {
    /// Which kind of problem (gives the code).
    pub kind: ProblemKind,
    /// The headline.
    pub message: String,
    source: Option<NamedSource<Arc<String>>>,
    labels: Vec<(Range<usize>, String)>,
    help: Option<String>,
    related: Vec<Problem>,
}

impl Problem {
    /// A problem at `span` of `file`, labelled with `label`. On a very long
    /// line the snippet would be unreadable (and costly to draw): the
    /// problem then names its place in the message instead.
    pub fn at(
        kind: ProblemKind,
        file: &SourceFile,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Problem {
        if file.line_len(span.start) > MAX_SNIPPET_LINE || span.len() > MAX_SNIPPET_LINE {
            let message = message.into();
            let shown: String = message.chars().take(200).collect();
            let more = if shown.len() < message.len() {
                "…"
            } else {
                ""
            };
            return Problem::bare(
                kind,
                format!(
                    "{shown}{more} (at {}; the line is too long to show)",
                    file.location(span.start)
                ),
            );
        }
        Problem {
            kind,
            message: message.into(),
            source: Some(file.named()),
            labels: vec![(span, label.into())],
            help: None,
            related: Vec::new(),
        }
    }

    /// A problem that has no place in a file (for example a missing file).
    pub fn bare(kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            message: message.into(),
            source: None,
            labels: Vec::new(),
            help: None,
            related: Vec::new(),
        }
    }

    /// Adds what the user should do next.
    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    /// Adds a line after the help (for example why the file was read).
    pub fn with_note(mut self, note: &str) -> Problem {
        self.help = Some(match self.help.take() {
            Some(h) => format!("{h}\nnote: {note}"),
            None => format!("note: {note}"),
        });
        self
    }

    /// Adds another label in the same file.
    pub fn with_label(mut self, span: Range<usize>, label: impl Into<String>) -> Problem {
        self.labels.push((span, label.into()));
        self
    }

    /// Attaches a related note (for example the first of two definitions).
    pub fn with_related(mut self, related: Problem) -> Problem {
        self.related.push(related);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.as_str()) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().map(|(span, label)| {
            LabeledSpan::new_with_span(Some(label.clone()), span.clone())
        })))
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|p| p as &dyn Diagnostic)))
    }
}

/// Every problem found in one load of the configuration.
#[derive(Debug)]
pub struct ConfigErrors {
    /// At least one problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.len() {
            1 => write!(f, "{}", self.problems[0]),
            n => write!(f, "found {n} problems in the configuration"),
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl Diagnostic for ConfigErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self.problems.as_slice() {
            [one] => one.code(),
            _ => Some(Box::new("hotpass::config")),
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        match self.problems.as_slice() {
            [one] => one.help(),
            _ => None,
        }
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self.problems.as_slice() {
            [one] => one.source_code(),
            _ => None,
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self.problems.as_slice() {
            [one] => one.labels(),
            _ => None,
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        match self.problems.as_slice() {
            [one] => one.related(),
            many => Some(Box::new(many.iter().map(|p| p as &dyn Diagnostic))),
        }
    }
}

impl From<Problem> for ConfigErrors {
    fn from(p: Problem) -> Self {
        ConfigErrors { problems: vec![p] }
    }
}

/// The closest candidates to `name`, best first, for "did you mean" help.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    // Bounded work: no name that long is a typo of a real one, and a
    // candidate of a very different length is no suggestion.
    const LONGEST: usize = 200;
    if name.len() > LONGEST {
        return Vec::new();
    }
    let close_in_length = |c: &str| {
        c.len() <= LONGEST && c.len() <= 3 * name.len() + 3 && name.len() <= 3 * c.len() + 3
    };
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter(|c| close_in_length(c))
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// "did you mean `a` or `b`?" for the suggestions, if any.
pub fn did_you_mean(suggestions: &[String]) -> Option<String> {
    match suggestions {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        many => {
            let quoted: Vec<String> = many.iter().map(|s| format!("`{s}`")).collect();
            Some(format!("did you mean one of {}?", quoted.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_ranks_close_names_first() {
        let got = suggest("biuld", ["build", "test", "bundle"]);
        assert_eq!(got.first().map(String::as_str), Some("build"));
        assert!(!got.contains(&"test".to_string()));
    }

    #[test]
    fn did_you_mean_formats_one_and_many() {
        assert_eq!(did_you_mean(&[]), None);
        assert_eq!(did_you_mean(&["a".into()]).unwrap(), "did you mean `a`?");
        assert_eq!(
            did_you_mean(&["a".into(), "b".into()]).unwrap(),
            "did you mean one of `a`, `b`?"
        );
    }
}

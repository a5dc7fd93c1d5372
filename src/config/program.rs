//! The programs a shell command starts: its first plain word, when that is
//! a program PATH can find rather than a builtin, an assignment or a path.

/// Shell builtins and keywords: words that are not programs on PATH.
pub const SHELL_WORDS: &[&str] = &[
    "cd", "echo", "test", "[", "true", "false", "exit", "export", "set", "unset", "if", "for",
    "while", "case", "until", "exec", "eval", ".", ":", "source", "read", "printf", "pwd", "trap",
    "wait", "command", "type", "{", "(", "!", "shift", "return", "local", "ulimit", "umask",
    "then", "do", "alias", "hash", "getopts", "times", "break", "continue", "readonly",
];

/// The first word of a shell command that is not a `VAR=value` assignment,
/// unquoted.
pub fn first_program(command: &str) -> Option<&str> {
    command
        .split_whitespace()
        .find(|w| !w.contains('=') || w.starts_with('='))
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .filter(|w| !w.is_empty())
}

/// The program a command starts, when it is a plain word a PATH lookup can
/// find: not a builtin, not a path, no expansion or quoting in it.
pub fn command_tool(command: &str) -> Option<&str> {
    let word = first_program(command)?;
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    (plain && !SHELL_WORDS.contains(&word)).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_plain_first_words_that_are_not_builtins() {
        assert_eq!(command_tool("FOO=1 BAR=2 cargo test"), Some("cargo"));
        assert_eq!(command_tool("  ruff check ."), Some("ruff"));
        assert_eq!(command_tool("echo hi"), None);
        assert_eq!(command_tool("./scripts/x.sh"), None);
        assert_eq!(command_tool("$CC -c x.c"), None);
        assert_eq!(command_tool("mkdir -p out && cp a b"), Some("mkdir"));
        assert_eq!(first_program(""), None);
    }
}

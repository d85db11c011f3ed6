//! A yes/no question on the terminal, asked before something that cannot
//! be undone (`k8s reset`, `k8s reset -i`, `k8s up --prune`).

use std::io::{BufRead, Write};

/// Writes `question [y/N] ` to `out` and reads the answer from stdin; only
/// `y` or `yes` is a yes (no answer at all, as at the end of input, is a no).
/// `out` is the caller's: `up` keeps stdout for its report, so it asks on
/// stderr.
pub fn confirm(question: &str, out: impl Write) -> anyhow::Result<bool> {
    ask(question, out, std::io::stdin().lock())
}

fn ask(question: &str, mut out: impl Write, mut input: impl BufRead) -> anyhow::Result<bool> {
    write!(out, "{question} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::ask;

    fn answer(input: &str) -> (bool, String) {
        let mut out = vec![];
        let yes = ask("Continue?", &mut out, input.as_bytes()).unwrap();
        (yes, String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_yes_is_yes() {
        assert_eq!(answer("y\n"), (true, "Continue? [y/N] ".to_string()));
        for yes in ["Y\n", "yes\n", "  yes  \n"] {
            assert!(answer(yes).0, "{yes:?}");
        }
        for no in ["\n", "", "n\n", "no\n", "YES\n", "yep\n"] {
            assert!(!answer(no).0, "{no:?}");
        }
    }
}

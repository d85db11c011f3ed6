use std::fmt;
use std::path::PathBuf;

/// One thing wrong (or worth a warning) in an inventory, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The inventory's path as the user gave it.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// Like `hosts[2].role`; empty for the whole file.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory {}: {error}; pass your hosts.yaml with -i (examples: inventories/ in the k8s repository)", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    /// Every problem found, in file order.
    #[error("{}", list(problems))]
    Invalid { problems: Vec<Problem> },
}

impl InventoryError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            InventoryError::Read { .. } => &[],
            InventoryError::Invalid { problems } => problems,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n")
}

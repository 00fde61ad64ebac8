//! Errors that say where and what, like `iptables-restore` does.

use std::fmt;
use thiserror::Error;

/// A ruleset that cannot be loaded: the file, the line, the option at fault and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// The file (or `-` for standard input).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The option or word at fault, when there is one.
    pub option: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(o) = &self.option {
            write!(f, "option \"{o}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// An error before file and line are known: the option and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptError {
    /// The option at fault.
    pub option: Option<String>,
    /// Why.
    pub message: String,
}

impl OptError {
    /// An error about an option.
    pub fn opt(option: &str, message: impl Into<String>) -> OptError {
        OptError {
            option: Some(option.to_string()),
            message: message.into(),
        }
    }

    /// An error about the line as a whole.
    pub fn line(message: impl Into<String>) -> OptError {
        OptError {
            option: None,
            message: message.into(),
        }
    }

    /// Adds the file and line.
    pub fn at(self, file: &str, line: usize) -> RulesError {
        RulesError {
            file: file.to_string(),
            line,
            option: self.option,
            message: self.message,
        }
    }
}

/// Result of parsing one option.
pub type OptResult<T> = Result<T, OptError>;

//! The configuration's errors: each names the file, the key (with its line when known) and what
//! was expected; several are reported together ([`ConfigError::Several`]).

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The OS error is in the message (not a `source`), so it is printed once.
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    /// TOML syntax, at `line` (1-based) when known (the message says where).
    #[error("{file}: {message}")]
    Parse {
        file: String,
        line: Option<usize>,
        message: String,
    },
    /// A key's value: unknown key, wrong type, or refused by validation.
    #[error("{}: key `{key}`: {message}", at(.file, *.line))]
    Invalid {
        file: String,
        key: String,
        message: String,
        line: Option<usize>,
    },
    /// More than one mistake: every one found, each on its own line.
    #[error("{} errors:\n{}", .0.len(), one_per_line(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// `Ok` when `errors` is empty, else the one error or all of them ([`ConfigError::Several`],
    /// flattened).
    pub(crate) fn gather(errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        let mut flat = Vec::new();
        for e in errors {
            match e {
                ConfigError::Several(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        match flat.len() {
            0 => Ok(()),
            1 => Err(flat.remove(0)),
            _ => Err(ConfigError::Several(flat)),
        }
    }

    /// Each single error this holds, owned.
    pub fn into_each(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(all) => all,
            e => vec![e],
        }
    }

    /// Each single error this holds.
    pub fn each(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(all) => all.iter().collect(),
            e => vec![e],
        }
    }
}

/// `file:line`, or `file` when the line is not known.
fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

fn one_per_line(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

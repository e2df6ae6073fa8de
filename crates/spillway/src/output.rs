//! Files the commands write.
use anyhow::Context as _;

/// Write `report` to `path` as pretty JSON, and say so on stderr as `command`.
pub fn write_json(
    path: &std::path::Path,
    report: &impl serde::Serialize,
    command: &str,
) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("{command}: wrote {}", path.display());
    Ok(())
}

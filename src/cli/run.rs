//! `plexus run CONFIG`: runs the routers a Linkerd 1.x configuration describes, until
//! SIGTERM, SIGINT or `POST /admin/shutdown`.

use std::path::PathBuf;

use super::{CliError, read_arg};
use crate::config::Config;

/// Loads, validates and runs the configuration at `config` (`-` for standard input).
pub(super) fn run(config: PathBuf) -> Result<String, CliError> {
    let name = config.display().to_string();
    let text = if name == "-" {
        read_arg("-", &mut false)?
    } else {
        std::fs::read_to_string(&config).map_err(|e| CliError::BadInput(format!("{name}: {e}")))?
    };
    let parsed = Config::parse(&text).map_err(|e| CliError::BadInput(format!("{name}: {e}")))?;
    let problems = parsed.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        return Err(CliError::BadInput(format!(
            "{name}: Plexus cannot run this configuration yet:\n{}",
            list.join("\n")
        )));
    }
    // The file as JSON for /config.json (both syntaxes read into the same tree).
    let raw: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).unwrap_or_default()
    } else {
        serde_saphyr::from_str(&text).unwrap_or_default()
    };
    crate::admin::init_logging("info");
    let system = actix_rt::System::new();
    system
        .block_on(crate::runtime::run(
            parsed,
            raw,
            crate::runtime::Shutdown::default(),
        ))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(String::new())
}

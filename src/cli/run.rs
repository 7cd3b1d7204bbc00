//! `plexus run CONFIG`: runs the routers a Linkerd 1.x configuration describes, until
//! SIGTERM, SIGINT or `POST /admin/shutdown`.

use std::path::PathBuf;

use super::{CliError, load_config};

/// Loads, validates and runs the configuration at `config` (`-` for standard input).
pub(super) fn run(config: PathBuf) -> Result<String, CliError> {
    let (parsed, text) = load_config(&config)?;
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

//! `plexus check CONFIG`: reads a Linkerd 1.x configuration and says whether Plexus can
//! run it, naming every key or kind it cannot, without starting anything.

use std::path::PathBuf;

use super::{CliError, read_arg};
use crate::config::{Config, Router};

/// Validates the file at `config` (`-` for standard input) and describes it.
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
    let mut out = format!("{name}: configuration is valid");
    for router in &parsed.routers {
        if let Router::Http(r) = router {
            let servers: Vec<String> = r
                .servers
                .iter()
                .map(|s| {
                    let ip = s.ip.map_or("127.0.0.1".to_string(), |ip| ip.to_string());
                    format!("{ip}:{}", s.port.unwrap_or(4140))
                })
                .collect();
            let label = r.label.as_deref().unwrap_or("http");
            out.push_str(&format!(
                "\n  router {label} (http) on {}, {} dtab entries",
                servers.join(", "),
                r.dtab.len()
            ));
        }
    }
    Ok(out)
}

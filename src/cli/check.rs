//! `plexus check CONFIG`: reads a Linkerd 1.x configuration and says whether Plexus can
//! run it, naming every key or kind it cannot, without starting anything.

use std::path::PathBuf;

use super::{CliError, load_config};

/// Validates the file at `config` (`-` for standard input) and describes it.
pub(super) fn run(config: PathBuf) -> Result<String, CliError> {
    let name = config.display().to_string();
    let (parsed, _) = load_config(&config)?;
    let mut out = format!("{name}: configuration is valid");
    for router in &parsed.routers {
        if let Some((r, flavor)) = router.thrift() {
            let servers: Vec<String> = r
                .servers
                .iter()
                .map(|s| {
                    let ip = s.ip.map_or("127.0.0.1".to_string(), |ip| ip.to_string());
                    let framing = if s.thrift_framed.unwrap_or(true) {
                        "framed"
                    } else {
                        "unframed"
                    };
                    format!(
                        "{ip}:{} ({framing})",
                        s.port.unwrap_or(flavor.default_port())
                    )
                })
                .collect();
            out.push_str(&format!(
                "\n  router {} ({}) on {}, {} dtab entries",
                router.label(),
                flavor.protocol(),
                servers.join(", "),
                r.dtab.len()
            ));
        }
        if let Some((r, version)) = router.http() {
            let servers: Vec<String> = r
                .servers
                .iter()
                .map(|s| {
                    let ip = s.ip.map_or("127.0.0.1".to_string(), |ip| ip.to_string());
                    format!("{ip}:{}", s.port.unwrap_or(version.default_port()))
                })
                .collect();
            let protocol = version.protocol();
            let label = r.label.as_deref().unwrap_or(protocol);
            out.push_str(&format!(
                "\n  router {label} ({protocol}) on {}, {} dtab entries",
                servers.join(", "),
                r.dtab.len()
            ));
        }
    }
    Ok(out)
}

//! `plexus tls init|issue`: a mesh CA and the certificates it signs, so that encrypting
//! traffic between nodes takes two commands and no OpenSSL recipe.
//!
//! `init DIR` creates the CA (`ca.pem`, `ca-key.pem`); `issue DIR NAME` creates a
//! certificate for a node or for the whole mesh (`NAME.pem`, `NAME-key.pk8.pem`, the key
//! in PKCS#8 as Linkerd 1.x configs expect), signed by that CA. Keys are ECDSA P-256 and
//! written readable by their owner only. Existing files are never replaced without
//! `--force`, and replaced files are swapped in whole (written aside, then renamed) so
//! that a Plexus reloading them never reads half a file.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::CliError;

/// The CA certificate's file name in a `plexus tls` directory.
const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
const CA_KEY: &str = "ca-key.pem";
/// The longest validity accepted, in days (100 years).
const MAX_DAYS: u32 = 36_500;

/// `plexus tls ...`.
#[derive(Subcommand, Debug)]
pub(super) enum TlsCommand {
    /// Create a mesh CA in DIR: ca.pem (the certificate everyone trusts) and ca-key.pem
    /// (its private key, readable by its owner only; keep it off the nodes).
    Init {
        /// The directory to write to (created if missing).
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Plexus mesh CA")]
        name: String,
        /// How many days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by DIR's CA: NAME.pem and its key NAME-key.pk8.pem
    /// (PKCS#8, readable by its owner only).
    Issue {
        /// The directory holding the CA (from `plexus tls init`).
        dir: PathBuf,
        /// The certificate's name: its subject CN and its file names.
        name: String,
        /// A DNS name the certificate is valid for (repeatable). Without --dns or --ip,
        /// NAME is used.
        #[arg(long = "dns", value_name = "DNS_NAME")]
        dns: Vec<String>,
        /// An IP address the certificate is valid for (repeatable).
        #[arg(long = "ip", value_name = "ADDRESS")]
        ip: Vec<IpAddr>,
        /// How many days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Also allow the certificate as a TLS client certificate, for mutual TLS
        /// (`clientAuth` of a client, checked by a server's `caCertPath`).
        #[arg(long)]
        client: bool,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `plexus tls ...`.
pub(super) fn run(command: TlsCommand) -> Result<String, CliError> {
    match command {
        TlsCommand::Init {
            dir,
            name,
            days,
            force,
        } => init(&dir, &name, days, force),
        TlsCommand::Issue {
            dir,
            name,
            dns,
            ip,
            days,
            client,
            force,
        } => issue(
            &dir,
            &IssueRequest {
                name,
                dns,
                ip,
                days,
                client,
            },
            force,
        ),
    }
}

fn check_days(days: u32) -> Result<(), CliError> {
    if days == 0 || days > MAX_DAYS {
        return Err(CliError::BadInput(format!(
            "--days must be between 1 and {MAX_DAYS}, not {days}"
        )));
    }
    Ok(())
}

/// A random positive 128-bit serial number, from the TLS provider's secure random source.
fn random_serial() -> Result<SerialNumber, CliError> {
    let mut bytes = [0u8; 16];
    plexus_tls::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CliError::Failed("cannot get random bytes for a serial number".into()))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Validity from an hour ago (tolerating clock skew between nodes) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    // Certificates keep whole seconds.
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn format_date(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Refuses to go on if any of `paths` exists, unless `force`.
fn refuse_overwrite(paths: &[&Path], force: bool) -> Result<(), CliError> {
    if force {
        return Ok(());
    }
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        Ok(())
    } else {
        Err(CliError::BadInput(format!(
            "{} already exist{}; use --force to replace {}",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" },
            if existing.len() == 1 { "it" } else { "them" },
        )))
    }
}

/// Writes `contents` to `path` whole: into a temporary file beside it (with `mode`),
/// then renamed over it.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CliError> {
    let failed =
        |e: std::io::Error| CliError::Failed(format!("cannot write {}: {e}", path.display()));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = options.open(&tmp).and_then(|mut f| {
        // The mode given to open() is reduced by the umask; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(e));
    }
    Ok(())
}

fn init(dir: &Path, name: &str, days: u32, force: bool) -> Result<String, CliError> {
    check_days(days)?;
    if name.trim().is_empty() {
        return Err(CliError::BadInput("--name must not be empty".into()));
    }
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    refuse_overwrite(&[&cert_path, &key_path], force)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dir.display())))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Plexus");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, days);
    let not_after = params.not_after;
    let key = KeyPair::generate()
        .map_err(|e| CliError::Failed(format!("cannot generate the CA key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CliError::Failed(format!("cannot create the CA certificate: {e}")))?;

    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &cert.pem(), 0o644)?;
    Ok(format!(
        "wrote {cert} (CA certificate \"{name}\", valid until {until}): clients trust it \
         (tls.trustCertsBundle), servers check client certificates with it (tls.caCertPath)\n\
         wrote {key} (CA private key, mode 0600): keep it safe and off the nodes\n\
         next: plexus tls issue {dir} linkerd --dns linkerd",
        cert = cert_path.display(),
        key = key_path.display(),
        until = format_date(not_after),
        dir = dir.display(),
    ))
}

/// What `issue` is asked for.
struct IssueRequest {
    name: String,
    dns: Vec<String>,
    ip: Vec<IpAddr>,
    days: u32,
    client: bool,
}

/// A certificate file name: letters, digits, `.`, `_`, `-`, not starting with `.`.
fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::BadInput(format!(
            "invalid certificate name {name:?}: use letters, digits, '.', '_' and '-' \
             (it names the files)"
        )))
    }
}

/// A DNS name as certificates carry it: labels of letters, digits and `-`, optionally
/// after a `*.` wildcard.
fn check_dns(name: &str) -> Result<(), CliError> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !bare.is_empty() && bare.len() <= 253 && bare.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(CliError::BadInput(format!("invalid DNS name {name:?}")))
    }
}

fn issue(dir: &Path, req: &IssueRequest, force: bool) -> Result<String, CliError> {
    check_days(req.days)?;
    check_name(&req.name)?;
    let mut dns = req.dns.clone();
    if dns.is_empty() && req.ip.is_empty() {
        dns.push(req.name.clone());
    }
    for d in &dns {
        check_dns(d)?;
    }

    let ca_cert_path = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            CliError::BadInput(format!(
                "cannot read {}: {e} (create the CA first: plexus tls init {})",
                p.display(),
                dir.display()
            ))
        })
    };
    let ca_cert = read(&ca_cert_path)?;
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(|e| {
        CliError::BadInput(format!(
            "{}: not a usable private key: {e}",
            ca_key_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key).map_err(|e| {
        CliError::BadInput(format!(
            "{}: not a usable CA certificate: {e}",
            ca_cert_path.display()
        ))
    })?;

    let cert_path = dir.join(format!("{}.pem", req.name));
    let key_path = dir.join(format!("{}-key.pk8.pem", req.name));
    refuse_overwrite(&[&cert_path, &key_path], force)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Plexus");
    dn.push(DnType::CommonName, req.name.as_str());
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for d in &dns {
        let ia5 = d
            .clone()
            .try_into()
            .map_err(|e| CliError::BadInput(format!("invalid DNS name {d:?}: {e}")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(req.ip.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if req.client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, req.days);
    let not_after = params.not_after;
    let key =
        KeyPair::generate().map_err(|e| CliError::Failed(format!("cannot generate a key: {e}")))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| CliError::Failed(format!("cannot sign the certificate: {e}")))?;

    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &cert.pem(), 0o644)?;

    let mut names: Vec<String> = dns.iter().map(|d| format!("DNS {d}")).collect();
    names.extend(req.ip.iter().map(|ip| format!("IP {ip}")));
    let usage = if req.client {
        "server and client certificate"
    } else {
        "server certificate"
    };
    let common_name = dns.first().cloned().unwrap_or_else(|| req.name.clone());
    Ok(format!(
        "wrote {cert} ({usage} for {names}, valid until {until})\n\
         wrote {key} (its private key, PKCS#8, mode 0600)\n\
         server tls: {{certPath: {cert}, keyPath: {key}}}\n\
         client tls: {{commonName: {common_name}, trustCertsBundle: {ca}}}",
        cert = cert_path.display(),
        key = key_path.display(),
        names = names.join(", "),
        until = format_date(not_after),
        ca = ca_cert_path.display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dns_names_are_checked() {
        assert!(check_name("node-1.example").is_ok());
        assert!(check_name("../etc/passwd").is_err());
        assert!(check_name(".hidden").is_err());
        assert!(check_name("").is_err());
        assert!(check_dns("linkerd").is_ok());
        assert!(check_dns("*.mesh.svc.cluster.local").is_ok());
        assert!(check_dns("bad_name").is_err());
        assert!(check_dns("-x.example").is_err());
        assert!(check_dns("a..b").is_err());
    }

    #[test]
    fn days_are_bounded() {
        assert!(check_days(1).is_ok());
        assert!(check_days(0).is_err());
        assert!(check_days(MAX_DAYS + 1).is_err());
    }
}

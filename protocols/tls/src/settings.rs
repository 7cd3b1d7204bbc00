//! The `tls:` blocks of a Linkerd 1.x config as Plexus reads them, and their checks.
//!
//! A server's block says which certificate to present and whether to ask for client
//! certificates; a client's block says how to verify the peer (`commonName`, trusted CAs)
//! and which certificate to present. Keys keep Linkerd's names; unknown keys are refused
//! (Linkerd refuses them too, and a misspelt security setting must not be ignored).
//! [`ServerTlsSettings::validate`] and [`ClientTlsSettings::validate`] list every
//! problem at once, each naming its key.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::SupportedCipherSuite;
use rustls::SupportedProtocolVersion;
use serde::{Deserialize, Serialize};

use crate::error::TlsError;

/// A server's `tls:` block: the certificate this server presents and, optionally, the CA
/// that client certificates must chain to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// The certificate (PEM). Further certificates in the same file are sent as the
    /// chain after it.
    pub cert_path: PathBuf,
    /// The private key (PEM): PKCS#8 (`PRIVATE KEY`, what Linkerd requires), or PKCS#1
    /// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub key_path: PathBuf,
    /// Intermediate CA certificates (PEM) sent after the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to. When set, clients
    /// are asked for a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_path: Option<PathBuf>,
    /// Refuse clients that present no certificate (needs `caCertPath`). Default false:
    /// a certificate is asked for but optional.
    #[serde(default)]
    pub require_client_auth: bool,
    /// TLS versions to offer, in Java's names (`TLSv1.2`, `TLSv1.3`). Default: both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    /// Cipher suites to offer, by IANA name (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`,
    /// `TLS_AES_128_GCM_SHA256`). Default: every suite Plexus implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
}

/// A client's `tls:` block: how to verify the servers it connects to and which
/// certificate to present to them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// Whether to originate TLS at all. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Accept any server certificate. Dangerous; not allowed with `clientAuth`.
    #[serde(default)]
    pub disable_validation: bool,
    /// The name the server's certificate must carry; also sent as SNI. May contain
    /// `{var}` captures of the client's `prefix` (see
    /// [`common_name_with`](Self::common_name_with)). Required unless
    /// `disableValidation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// A PEM file of CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_certs_bundle: Option<PathBuf>,
    /// PEM files of CA certificates to trust (Linkerd's older form of
    /// `trustCertsBundle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_certs: Vec<PathBuf>,
    /// The certificate this client presents, for servers that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuthSettings>,
    /// TLS versions to offer (`TLSv1.2`, `TLSv1.3`). Default: both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<String>>,
    /// Plexus only: accept server certificates that strict verification refuses
    /// (X.509 v1, the name only in the subject CN, an expired CA). The chain signature,
    /// the name and the server certificate's own dates are still checked. Default false.
    #[serde(default)]
    pub legacy_certificates: bool,
}

/// A client's `clientAuth:` block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthSettings {
    /// The client certificate (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Intermediate CA certificates (PEM) sent after the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_certs_path: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

impl Default for ClientTlsSettings {
    fn default() -> Self {
        ClientTlsSettings {
            enabled: true,
            disable_validation: false,
            common_name: None,
            trust_certs_bundle: None,
            trust_certs: Vec::new(),
            client_auth: None,
            protocols: None,
            legacy_certificates: false,
        }
    }
}

/// One thing wrong with a `tls:` block, naming its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsProblem {
    /// The key at fault, as written in the config (`requireClientAuth`, `commonName`).
    pub key: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl SettingsProblem {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        SettingsProblem {
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A TLS version Plexus speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (`TLSv1.2`).
    Tls12,
    /// TLS 1.3 (`TLSv1.3`).
    Tls13,
}

impl TlsVersion {
    /// The version's name in configs and logs (`TLSv1.2`).
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    pub(crate) fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }

    pub(crate) fn from_rustls(v: rustls::ProtocolVersion) -> Option<TlsVersion> {
        match v {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Versions a Java-era config may list that Plexus does not speak: dropped with a
/// warning rather than refused, so that lists like `[TLSv1.1, TLSv1.2]` still work.
const OLD_VERSIONS: &[&str] = &["sslv2hello", "sslv3", "tlsv1", "tlsv1.1"];

/// The outcome of reading a `protocols:` or `ciphers:` list: what to use and what was
/// dropped (to be logged by whoever builds the config).
#[derive(Debug)]
pub(crate) struct Resolved<T> {
    pub(crate) chosen: Vec<T>,
    pub(crate) dropped: Vec<String>,
}

/// Reads a `protocols:` list. `None` means both versions.
pub(crate) fn resolve_versions(
    protocols: Option<&[String]>,
) -> Result<Resolved<TlsVersion>, SettingsProblem> {
    let Some(list) = protocols else {
        return Ok(Resolved {
            chosen: vec![TlsVersion::Tls13, TlsVersion::Tls12],
            dropped: Vec::new(),
        });
    };
    let mut chosen = Vec::new();
    let mut dropped = Vec::new();
    for name in list {
        let lower = name.trim().to_ascii_lowercase();
        let version = match lower.as_str() {
            "tlsv1.2" => TlsVersion::Tls12,
            "tlsv1.3" => TlsVersion::Tls13,
            old if OLD_VERSIONS.contains(&old) => {
                dropped.push(name.clone());
                continue;
            }
            _ => {
                return Err(SettingsProblem::new(
                    "protocols",
                    format!("unknown TLS version {name:?} (use TLSv1.2 or TLSv1.3)"),
                ));
            }
        };
        if !chosen.contains(&version) {
            chosen.push(version);
        }
    }
    if chosen.is_empty() {
        return Err(SettingsProblem::new(
            "protocols",
            format!(
                "none of {list:?} is spoken by Plexus (TLSv1.2 and TLSv1.3 are; older versions are insecure)"
            ),
        ));
    }
    Ok(Resolved { chosen, dropped })
}

/// The name of a cipher suite as configs write it: IANA's (`TLS_AES_128_GCM_SHA256`
/// for the TLS 1.3 suites rustls calls `TLS13_AES_128_GCM_SHA256`).
pub(crate) fn suite_name(suite: &SupportedCipherSuite) -> String {
    let name = suite
        .suite()
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{:?}", suite.suite()));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// Reads a `ciphers:` list against the suites the provider implements. Names Plexus does
/// not implement are dropped (Java configs often list old CBC suites); a list with no
/// usable suite is refused.
pub(crate) fn resolve_ciphers(
    ciphers: Option<&[String]>,
    available: &[SupportedCipherSuite],
) -> Result<Resolved<SupportedCipherSuite>, SettingsProblem> {
    let Some(list) = ciphers else {
        return Ok(Resolved {
            chosen: available.to_vec(),
            dropped: Vec::new(),
        });
    };
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut dropped = Vec::new();
    for name in list {
        let wanted = name.trim().to_ascii_uppercase();
        let found = available.iter().find(|s| {
            let ours = suite_name(s);
            ours == wanted || s.suite().as_str() == Some(wanted.as_str())
        });
        match found {
            Some(s) if !chosen.iter().any(|c| c.suite() == s.suite()) => chosen.push(*s),
            Some(_) => {}
            None => dropped.push(name.clone()),
        }
    }
    if chosen.is_empty() {
        let names: Vec<String> = available.iter().map(suite_name).collect();
        return Err(SettingsProblem::new(
            "ciphers",
            format!(
                "none of {list:?} is implemented by Plexus; use some of: {}",
                names.join(", ")
            ),
        ));
    }
    Ok(Resolved { chosen, dropped })
}

fn empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

impl ServerTlsSettings {
    /// Every problem with these settings, each naming its key. Files are not read
    /// here: [`ServerTls::new`](crate::ServerTls::new) reports unreadable files.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        if empty_path(&self.cert_path) {
            problems.push(SettingsProblem::new("certPath", "is empty"));
        }
        if empty_path(&self.key_path) {
            problems.push(SettingsProblem::new("keyPath", "is empty"));
        }
        if self.require_client_auth && self.ca_cert_path.is_none() {
            problems.push(SettingsProblem::new(
                "requireClientAuth",
                "needs caCertPath, the CA certificates that client certificates must chain to",
            ));
        }
        if let Err(p) = resolve_versions(self.protocols.as_deref()) {
            problems.push(p);
        }
        let provider = rustls::crypto::ring::default_provider();
        if let Err(p) = resolve_ciphers(self.ciphers.as_deref(), &provider.cipher_suites) {
            problems.push(p);
        }
        problems
    }
}

impl ClientTlsSettings {
    /// Every problem with these settings, each naming its key. A block with
    /// `enabled: false` has none: it is not used. Files are not read here:
    /// [`ClientTls::new`](crate::ClientTls::new) reports unreadable files.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        if self.disable_validation {
            if self.client_auth.is_some() {
                problems.push(SettingsProblem::new(
                    "clientAuth",
                    "cannot be used with disableValidation: true (a client that does not \
                     verify the server must not hand it a client certificate)",
                ));
            }
            if self.legacy_certificates {
                problems.push(SettingsProblem::new(
                    "legacyCertificates",
                    "has no meaning with disableValidation: true (nothing is verified)",
                ));
            }
        } else {
            if self.common_name.is_none() {
                problems.push(SettingsProblem::new(
                    "commonName",
                    "is required unless disableValidation is true: it is the name the \
                     server's certificate must carry",
                ));
            }
        }
        if let Some(cn) = &self.common_name
            && let Err(why) = parse_template(cn)
        {
            problems.push(SettingsProblem::new("commonName", format!("{cn:?}: {why}")));
        }
        if let Some(auth) = &self.client_auth {
            if empty_path(&auth.cert_path) {
                problems.push(SettingsProblem::new("clientAuth", "certPath is empty"));
            }
            if empty_path(&auth.key_path) {
                problems.push(SettingsProblem::new("clientAuth", "keyPath is empty"));
            }
        }
        if let Err(p) = resolve_versions(self.protocols.as_deref()) {
            problems.push(p);
        }
        problems
    }

    /// The `{var}` names `commonName` uses, in order (empty when it has none).
    pub fn common_name_vars(&self) -> Vec<String> {
        let Some(cn) = &self.common_name else {
            return Vec::new();
        };
        parse_template(cn)
            .map(|parts| {
                parts
                    .into_iter()
                    .filter_map(|p| match p {
                        Part::Var(v) => Some(v.to_string()),
                        Part::Text(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `commonName` with its `{var}` captures filled in by `capture` (for a static client
    /// whose `prefix: /#/io.l5d.fs/{service}` matched, `capture("service")` gives the
    /// service). `None` when no `commonName` is set. A capture that `capture` does not
    /// know is an error, never an empty string.
    pub fn common_name_with<'a>(
        &self,
        capture: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<String>, TlsError> {
        let Some(cn) = &self.common_name else {
            return Ok(None);
        };
        let parts = parse_template(cn).map_err(|detail| TlsError::CommonName {
            template: cn.clone(),
            detail,
        })?;
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match capture(v) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(TlsError::CommonName {
                            template: cn.clone(),
                            detail: format!("no capture named {{{v}}} in the client's prefix"),
                        });
                    }
                },
            }
        }
        Ok(Some(out))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits `"{service}.mesh"` into captures and text.
fn parse_template(t: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Text(rest));
                break;
            }
            Some(i) if rest[i..].starts_with('}') => {
                return Err("'}' without a matching '{'".into());
            }
            Some(i) => {
                if i > 0 {
                    parts.push(Part::Text(&rest[..i]));
                }
                let after = &rest[i + 1..];
                let end = after
                    .find(['{', '}'])
                    .filter(|&j| after[j..].starts_with('}'))
                    .ok_or_else(|| "'{' without a matching '}'".to_string())?;
                let name = &after[..end];
                if name.is_empty() {
                    return Err("empty capture name '{}'".into());
                }
                parts.push(Part::Var(name));
                rest = &after[end + 1..];
            }
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(yaml: &str) -> ClientTlsSettings {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn server_keys_parse_with_linkerd_names() {
        let s: ServerTlsSettings = serde_saphyr::from_str(
            "certPath: /c.pem\nkeyPath: /k.pk8\ncaCertPath: /ca.pem\nrequireClientAuth: true\n\
             protocols: [TLSv1.2]\nciphers: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
        )
        .expect("parses");
        assert_eq!(s.cert_path, PathBuf::from("/c.pem"));
        assert_eq!(s.ca_cert_path, Some(PathBuf::from("/ca.pem")));
        assert!(s.require_client_auth);
        assert!(s.validate().is_empty(), "{:?}", s.validate());
    }

    #[test]
    fn server_enabled_key_is_refused() {
        let err = serde_saphyr::from_str::<ServerTlsSettings>(
            "enabled: true\ncertPath: /c\nkeyPath: /k\n",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("enabled"), "{err}");
    }

    #[test]
    fn require_client_auth_needs_a_ca() {
        let s = ServerTlsSettings {
            cert_path: "/c".into(),
            key_path: "/k".into(),
            require_client_auth: true,
            ..Default::default()
        };
        let p = s.validate();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "requireClientAuth");
    }

    #[test]
    fn protocols_map_and_old_versions_are_dropped() {
        let list = vec!["TLSv1.1".to_string(), "TLSv1.2".to_string()];
        let r = resolve_versions(Some(&list)).expect("usable");
        assert_eq!(r.chosen, vec![TlsVersion::Tls12]);
        assert_eq!(r.dropped, vec!["TLSv1.1".to_string()]);
        let only_old = vec!["TLSv1".to_string()];
        assert_eq!(
            resolve_versions(Some(&only_old)).expect_err("none").key,
            "protocols"
        );
        let bogus = vec!["TLSv9".to_string()];
        assert!(
            resolve_versions(Some(&bogus))
                .expect_err("unknown")
                .message
                .contains("TLSv9")
        );
    }

    #[test]
    fn ciphers_map_by_iana_name() {
        let provider = rustls::crypto::ring::default_provider();
        let list = vec![
            "TLS_AES_128_GCM_SHA256".to_string(),
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".to_string(),
        ];
        let r = resolve_ciphers(Some(&list), &provider.cipher_suites).expect("one usable");
        assert_eq!(r.chosen.len(), 1);
        assert_eq!(suite_name(&r.chosen[0]), "TLS_AES_128_GCM_SHA256");
        assert_eq!(r.dropped, vec!["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]);
        let none = vec!["TLS_RSA_WITH_RC4_128_MD5".to_string()];
        let p = resolve_ciphers(Some(&none), &provider.cipher_suites).expect_err("none");
        assert!(p.message.contains("TLS_AES_256_GCM_SHA384"), "{p}");
    }

    #[test]
    fn client_defaults_and_required_keys() {
        let c = client("commonName: linkerd\ntrustCerts: [/ca.pem]\n");
        assert!(c.enabled);
        assert!(c.validate().is_empty());
        let missing = client("{}");
        let keys: Vec<&str> = missing.validate().iter().map(|p| p.key).collect();
        // No trust given means the system's CA bundle (checked when the client is built).
        assert_eq!(keys, vec!["commonName"]);
        let off = client("enabled: false\n");
        assert!(off.validate().is_empty());
    }

    #[test]
    fn disable_validation_refuses_client_auth() {
        let c = client("disableValidation: true\nclientAuth: {certPath: /c, keyPath: /k}\n");
        let p = c.validate();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "clientAuth");
        assert!(p[0].message.contains("disableValidation"));
    }

    #[test]
    fn old_client_keys_are_refused() {
        for yaml in ["kind: io.l5d.noValidation\n", "caCertPath: /ca.pem\n"] {
            assert!(
                serde_saphyr::from_str::<ClientTlsSettings>(yaml).is_err(),
                "{yaml}"
            );
        }
    }

    #[test]
    fn common_name_captures() {
        let c = client("commonName: \"{service}.{ns}.mesh\"\ntrustCerts: [/ca]\n");
        assert_eq!(c.common_name_vars(), vec!["service", "ns"]);
        let got = c
            .common_name_with(|v| match v {
                "service" => Some("world"),
                "ns" => Some("default"),
                _ => None,
            })
            .expect("filled");
        assert_eq!(got.as_deref(), Some("world.default.mesh"));
        let err = c
            .common_name_with(|v| (v == "service").then_some("world"))
            .expect_err("ns missing");
        assert!(err.to_string().contains("{ns}"), "{err}");
        let plain = client("commonName: linkerd\ntrustCerts: [/ca]\n");
        assert_eq!(
            plain
                .common_name_with(|_| None)
                .expect("no vars")
                .as_deref(),
            Some("linkerd")
        );
    }

    #[test]
    fn bad_templates_are_problems() {
        for cn in ["{service", "service}", "{}", "a{b{c}}"] {
            let c = ClientTlsSettings {
                common_name: Some(cn.into()),
                trust_certs: vec!["/ca".into()],
                ..Default::default()
            };
            let p = c.validate();
            assert_eq!(p.len(), 1, "{cn}: {p:?}");
            assert_eq!(p[0].key, "commonName");
        }
    }
}

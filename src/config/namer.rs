//! Namers and transformers (`namers:` and every `transformers:` list).

use std::path::PathBuf;

use serde::Deserialize;

use super::value;
use crate::naming::Path;

/// A configured namer, chosen by its `kind`. Kinds Plexus does not implement yet are
/// read and then rejected by name.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Namer {
    /// `io.l5d.fs`: one file per service in a directory.
    #[serde(rename = "io.l5d.fs")]
    Fs(FsNamer),
    /// Kubernetes endpoints: not implemented yet.
    #[serde(rename = "io.l5d.k8s")]
    K8s(serde::de::IgnoredAny),
    /// Kubernetes endpoints in the pod's namespace: not implemented yet.
    #[serde(rename = "io.l5d.k8s.ns")]
    K8sNs(serde::de::IgnoredAny),
    /// Kubernetes LoadBalancer services: not implemented yet.
    #[serde(rename = "io.l5d.k8s.external")]
    K8sExternal(serde::de::IgnoredAny),
    /// DNS SRV records: not implemented yet.
    #[serde(rename = "io.l5d.dnssrv")]
    DnsSrv(serde::de::IgnoredAny),
    /// Consul: not implemented yet.
    #[serde(rename = "io.l5d.consul")]
    Consul(serde::de::IgnoredAny),
    /// Path rewriting: not implemented yet.
    #[serde(rename = "io.l5d.rewrite")]
    Rewrite(serde::de::IgnoredAny),
    /// ZooKeeper serversets: not implemented yet.
    #[serde(rename = "io.l5d.serversets")]
    Serversets(serde::de::IgnoredAny),
    /// ZooKeeper leader: not implemented yet.
    #[serde(rename = "io.l5d.zkLeader")]
    ZkLeader(serde::de::IgnoredAny),
    /// Curator service discovery: not implemented yet.
    #[serde(rename = "io.l5d.curator")]
    Curator(serde::de::IgnoredAny),
    /// Marathon: not implemented yet.
    #[serde(rename = "io.l5d.marathon")]
    Marathon(serde::de::IgnoredAny),
    /// Rancher: not implemented yet.
    #[serde(rename = "io.l5d.rancher")]
    Rancher(serde::de::IgnoredAny),
}

impl Namer {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Namer::Fs(_) => "io.l5d.fs",
            Namer::K8s(_) => "io.l5d.k8s",
            Namer::K8sNs(_) => "io.l5d.k8s.ns",
            Namer::K8sExternal(_) => "io.l5d.k8s.external",
            Namer::DnsSrv(_) => "io.l5d.dnssrv",
            Namer::Consul(_) => "io.l5d.consul",
            Namer::Rewrite(_) => "io.l5d.rewrite",
            Namer::Serversets(_) => "io.l5d.serversets",
            Namer::ZkLeader(_) => "io.l5d.zkLeader",
            Namer::Curator(_) => "io.l5d.curator",
            Namer::Marathon(_) => "io.l5d.marathon",
            Namer::Rancher(_) => "io.l5d.rancher",
        }
    }
}

/// `io.l5d.fs`: each file in `rootDir` is a service; lines are `host port [* weight]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsNamer {
    /// The directory of service files.
    pub root_dir: PathBuf,
    /// Where it is mounted: `prefix: /x` means `/#/x` (default `/#/io.l5d.fs`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
    /// Opt-in for experimental namers.
    pub experimental: Option<bool>,
    /// Applied to this namer's bound trees.
    #[serde(default)]
    pub transformers: Vec<Transformer>,
}

/// A transformer, chosen by its `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Transformer {
    /// Rewrites every port.
    #[serde(rename = "io.l5d.port")]
    Port(PortTransformer),
    /// Keeps addresses of this host only.
    #[serde(rename = "io.l5d.localhost")]
    Localhost(PrefixOnly),
    /// Keeps addresses of one host only.
    #[serde(rename = "io.l5d.specificHost")]
    SpecificHost(SpecificHostTransformer),
    /// Replaces every bound leaf with the binding of a path.
    #[serde(rename = "io.l5d.replace")]
    Replace(PathTransformer),
    /// Always the binding of a path.
    #[serde(rename = "io.l5d.const")]
    Const(PathTransformer),
    /// To the daemonset proxy on the endpoint's node: not implemented yet.
    #[serde(rename = "io.l5d.k8s.daemonset")]
    K8sDaemonset(serde::de::IgnoredAny),
    /// Only endpoints on this node: not implemented yet.
    #[serde(rename = "io.l5d.k8s.localnode")]
    K8sLocalnode(serde::de::IgnoredAny),
}

impl Transformer {
    /// The kind as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Transformer::Port(_) => "io.l5d.port",
            Transformer::Localhost(_) => "io.l5d.localhost",
            Transformer::SpecificHost(_) => "io.l5d.specificHost",
            Transformer::Replace(_) => "io.l5d.replace",
            Transformer::Const(_) => "io.l5d.const",
            Transformer::K8sDaemonset(_) => "io.l5d.k8s.daemonset",
            Transformer::K8sLocalnode(_) => "io.l5d.k8s.localnode",
        }
    }
}

/// A transformer with no settings but its optional prefix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixOnly {
    /// The id prefix it adds (default `/%/<kind>`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

/// `io.l5d.port` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortTransformer {
    /// The port every address gets.
    pub port: u16,
    /// The id prefix it adds.
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

/// `io.l5d.specificHost` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificHostTransformer {
    /// The host whose addresses are kept.
    pub host: String,
    /// The id prefix it adds.
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

/// `io.l5d.replace` / `io.l5d.const` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTransformer {
    /// The path to bind instead.
    #[serde(deserialize_with = "value::path")]
    pub path: Path,
    /// The id prefix it adds.
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

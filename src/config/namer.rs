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
    /// Kubernetes endpoints: `/<namespace>/<port>/<service>[/<label value>]`.
    #[serde(rename = "io.l5d.k8s")]
    K8s(K8sNamer),
    /// Kubernetes endpoints in one namespace (the pod's): `/<port>/<service>[/<label value>]`.
    #[serde(rename = "io.l5d.k8s.ns")]
    K8sNs(K8sNsNamer),
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

/// `io.l5d.k8s`: endpoints from the Kubernetes API.
///
/// With `host` (and `port`, default 8001) Plexus speaks plain HTTP to that address, which
/// is how Linkerd users deploy it (a `kubectl proxy` sidecar on `localhost:8001`). Without
/// `host`, Plexus uses the pod's service-account credentials (in-cluster), and falls back
/// to `localhost:8001` when it is not running in a pod.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sNamer {
    /// The API host (a `kubectl proxy`), or none for in-cluster credentials.
    pub host: Option<String>,
    /// The API port (default 8001 with `host`).
    pub port: Option<u16>,
    /// A label name: lookups then take a label value after the service name and see
    /// only endpoints whose service carries `<labelSelector>=<value>`.
    pub label_selector: Option<String>,
    /// Where it is mounted: `prefix: /x` means `/#/x` (default `/#/io.l5d.k8s`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
    /// Opt-in for experimental namers.
    pub experimental: Option<bool>,
    /// Applied to this namer's bound trees.
    #[serde(default)]
    pub transformers: Vec<Transformer>,
}

/// `io.l5d.k8s.ns`: [`K8sNamer`] for one namespace, read from an environment variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sNsNamer {
    /// The API host, or none for in-cluster credentials.
    pub host: Option<String>,
    /// The API port (default 8001 with `host`).
    pub port: Option<u16>,
    /// As for [`K8sNamer::label_selector`].
    pub label_selector: Option<String>,
    /// The variable holding the namespace (default `POD_NAMESPACE`).
    pub env_var: Option<String>,
    /// Where it is mounted (default `/#/io.l5d.k8s.ns`).
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
    /// Sends to the daemonset proxy on each endpoint's node instead.
    #[serde(rename = "io.l5d.k8s.daemonset")]
    K8sDaemonset(DaemonsetTransformer),
    /// Keeps only the endpoints on this node.
    #[serde(rename = "io.l5d.k8s.localnode")]
    K8sLocalnode(LocalnodeTransformer),
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

/// `io.l5d.k8s.daemonset` settings: the daemonset's service, whose endpoints replace each
/// bound endpoint with the daemonset pod on the same node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DaemonsetTransformer {
    /// The daemonset service's namespace.
    pub namespace: String,
    /// The daemonset service's name.
    pub service: String,
    /// The daemonset service's port name (or number).
    #[serde(deserialize_with = "value::name_or_number")]
    pub port: String,
    /// The API host; without it, the connection of the `io.l5d.k8s` namer if one is
    /// configured, else as [`K8sNamer`] without `host`.
    pub k8s_host: Option<String>,
    /// The API port (default 8001 with `k8sHost`).
    pub k8s_port: Option<u16>,
    /// Match by node name instead of /24 subnet (pods on the host network).
    #[serde(default)]
    pub host_network: bool,
    /// The id prefix it adds (default `/io.l5d.k8s.daemonset/<namespace>/<port>/<service>`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

/// `io.l5d.k8s.localnode` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalnodeTransformer {
    /// Match by node name (`NODE_NAME`) instead of the /24 subnet of `POD_IP`.
    #[serde(default)]
    pub host_network: bool,
    /// The id prefix it adds (default `/io.l5d.k8s.localnode/<ip or node>`).
    #[serde(default, deserialize_with = "value::opt_path")]
    pub prefix: Option<Path>,
}

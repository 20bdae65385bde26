//! The cluster side of `manifests`: its version (the default target), its discovery (which kinds of
//! which group/versions it serves) and server-side dry-run creates of converted objects. Connects
//! with the same client as `check` (`checks::cluster::connect`), every request bounded by `--timeout`.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use anyhow::{Result, bail};
use kube::Client;
use serde_json::Value;

use super::{lifecycle::Minor, verdict::Served};
use crate::{
    checks::cluster::connect::{self, ApiFailure},
    core::{config::Config, facts::FactError},
    report::ClusterInfo,
};

/// The most group/versions whose resources one run asks about.
const MAX_LOOKUPS: usize = 500;

/// One served resource: its plural name and whether it lives in a namespace.
#[derive(Debug, Clone)]
struct Resource {
    kind: String,
    plural: String,
    namespaced: bool,
}

/// A connected cluster.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub info: ClusterInfo,
    /// Its minor release (None when /version does not say).
    pub version: Option<Minor>,
    timeout: Duration,
    /// Every group/version it serves (`v1`, `apps/v1`, ...).
    served: HashSet<String>,
    /// Resources of the group/versions asked about so far.
    resources: HashMap<String, Result<Vec<Resource>, String>>,
}

fn failure(server: &str, timeout: Duration) -> impl Fn(kube::Error) -> ApiFailure + '_ {
    move |e| ApiFailure::classify(server, &e, timeout)
}

/// Connects to the cluster the kubeconfig names (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`,
/// in-cluster), reads its version and the group/versions it serves. None when there is no kubeconfig;
/// an error (exit 2) when one is found but the cluster cannot be used.
pub fn connect(cfg: &Config) -> Result<Option<Cluster>> {
    let target = match connect::find(cfg) {
        Ok(t) => t,
        Err(FactError::Missing(_)) => return Ok(None),
        Err(FactError::Unreadable(e)) => bail!("{e}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = target.server.clone();
    let context = target.context.clone();
    let timeout = cfg.timeout;
    let got = rt.block_on(async {
        let work = async {
            let client = connect::client(target, timeout).await?;
            let f = failure(&server, timeout);
            let (version, groups, core) = tokio::try_join!(
                async { client.apiserver_version().await.map_err(&f) },
                async { client.list_api_groups().await.map_err(&f) },
                async { client.list_core_api_versions().await.map_err(&f) },
            )?;
            Ok::<_, ApiFailure>((client, version, groups, core))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ApiFailure::timeout(&server, timeout)),
        }
    });
    let (client, version, groups, core) = match got {
        Ok(x) => x,
        Err(f) => bail!(
            "cannot use the cluster at {} ({}): {} — --offline checks the manifests without it",
            f.server,
            f.layer.as_str(),
            f.message
        ),
    };
    let mut served: HashSet<String> = core.versions.into_iter().collect();
    for g in groups.groups {
        served.extend(g.versions.into_iter().map(|v| v.group_version));
    }
    Ok(Some(Cluster {
        rt,
        client,
        info: ClusterInfo {
            server,
            server_version: Some(version.git_version.clone()),
            context,
        },
        version: Minor::parse(&version.git_version),
        timeout,
        served,
        resources: HashMap::new(),
    }))
}

impl Cluster {
    /// The resources of a group/version it serves, asked once.
    fn resources(&mut self, api_version: &str) -> Result<&[Resource], String> {
        if !self.resources.contains_key(api_version) {
            if self.resources.len() >= MAX_LOOKUPS {
                return Err(format!(
                    "not asked: more than {MAX_LOOKUPS} group/versions in one run"
                ));
            }
            let (client, timeout, server) =
                (self.client.clone(), self.timeout, self.info.server.clone());
            let gv = api_version.to_string();
            let got = self.rt.block_on(async move {
                let f = failure(&server, timeout);
                let ask = async {
                    if gv.contains('/') {
                        client.list_api_group_resources(&gv).await
                    } else {
                        client.list_core_api_resources(&gv).await
                    }
                };
                match tokio::time::timeout(timeout, ask).await {
                    Ok(r) => r.map_err(&f),
                    Err(_) => Err(ApiFailure::timeout(&server, timeout)),
                }
            });
            let entry = got
                .map(|l| {
                    l.resources
                        .into_iter()
                        .filter(|r| !r.name.contains('/'))
                        .map(|r| Resource {
                            kind: r.kind,
                            plural: r.name,
                            namespaced: r.namespaced,
                        })
                        .collect()
                })
                .map_err(|f| format!("{}: {}", f.layer.as_str(), f.message));
            self.resources.insert(api_version.to_string(), entry);
        }
        self.resources[api_version]
            .as_deref()
            .map_err(|e| e.clone())
    }

    /// A server-side dry-run create (`dryRun=All`, strict field validation) of a converted object:
    /// Ok when the API server would accept it, else its answer.
    pub fn dry_run_create(&mut self, v: &Value) -> Result<(), String> {
        let gv = v["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let res = self
            .resources(&gv)?
            .iter()
            .find(|r| r.kind == kind)
            .cloned()
            .ok_or_else(|| format!("the cluster does not serve {gv} {kind}"))?;
        let prefix = if gv.contains('/') {
            format!("/apis/{gv}")
        } else {
            format!("/api/{gv}")
        };
        let ns = v["metadata"]["namespace"].as_str().unwrap_or("default");
        let path = if res.namespaced {
            format!(
                "{prefix}/namespaces/{ns}/{}?dryRun=All&fieldValidation=Strict",
                res.plural
            )
        } else {
            format!("{prefix}/{}?dryRun=All&fieldValidation=Strict", res.plural)
        };
        let body = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| e.to_string())?;
        let (client, timeout, server) =
            (self.client.clone(), self.timeout, self.info.server.clone());
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, client.request::<Value>(req)).await {
                Err(_) => Err(ApiFailure::timeout(&server, timeout).message),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(kube::Error::Api(s))) => {
                    Err(format!("{} {}: {}", s.code, s.reason, s.message))
                }
                Ok(Err(e)) => Err(ApiFailure::classify(&server, &e, timeout).message),
            }
        })
    }
}

impl Served for Cluster {
    fn serves(&mut self, api_version: &str, kind: &str) -> Result<bool, String> {
        if !self.served.contains(api_version) {
            return Ok(false);
        }
        Ok(self.resources(api_version)?.iter().any(|r| r.kind == kind))
    }
}

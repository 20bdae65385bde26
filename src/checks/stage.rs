//! The install stage as a source the stage-aware checks read: `--stage`, or auto from kubelet.conf
//! and the node's role.

use crate::core::{
    config::Config,
    engine::resolve_role,
    host::Host,
    source::Source,
    stage::{KUBELET_CONF, Stage},
};

/// The stage this run checks for.
pub const STAGE: Source<Stage> = Source::files("stage", |g| Ok(stage(g.host, g.cfg)));

/// `--stage`, or auto: installed when kubelet.conf exists, else pre-init/pre-join by the role.
pub fn stage(host: &Host, cfg: &Config) -> Stage {
    Stage::resolve(
        cfg.stage,
        host.exists(KUBELET_CONF),
        resolve_role(cfg.role, host),
    )
}

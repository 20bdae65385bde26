//! The fuzz targets: one function per parser that outside input reaches, shared by the cargo-fuzz
//! binaries in `fuzz/` (nightly) and the stable seeded mutation test (`tests/fuzz.rs`).
//! Each takes arbitrary bytes and must return without panicking, in bounded time.

use crate::{
    bundle,
    checks::{cluster::connect, dns, firewall, kubelet, swap, sysctl},
    join, multicast, procnet,
};

/// A named parser entry point and where its seed inputs live (paths relative to the repository).
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Seed files: fixtures (a trailing `*` matches every host root) and `fuzz/seeds/NAME/`.
    pub seeds: &'static [&'static str],
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "resolv_conf",
        run: |d| {
            let _ = dns::parse_resolv_conf("/etc/resolv.conf", &text(d));
        },
        seeds: &[
            "fixtures/hosts/*/etc/resolv.conf",
            "fixtures/hosts/*/run/systemd/resolve/resolv.conf",
        ],
    },
    Target {
        name: "fstab",
        run: |d| {
            let _ = swap::parse_fstab_swaps(&text(d));
        },
        seeds: &["fixtures/hosts/*/etc/fstab"],
    },
    Target {
        name: "swaps",
        run: |d| {
            let _ = swap::parse_proc_swaps(&text(d));
        },
        seeds: &["fixtures/hosts/*/proc/swaps"],
    },
    Target {
        name: "sysctl",
        run: |d| {
            let _ = sysctl::parse_sysctl_conf("/etc/sysctl.conf", &text(d));
        },
        seeds: &[
            "fixtures/hosts/*/etc/sysctl.conf",
            "fixtures/hosts/*/usr/lib/sysctl.d/00-system.conf",
        ],
    },
    Target {
        name: "iptables_save",
        run: |d| {
            let t = text(d);
            for family in [firewall::model::Family::Ip, firewall::model::Family::Ip6] {
                let _ =
                    firewall::iptables::parse(&t, firewall::model::Origin::IptablesLegacy, family);
            }
            let _ = multicast::firewall::parse_iptables_save(&t, "iptables-save");
        },
        seeds: &[
            "fixtures/firewall/*.rules",
            "fixtures/hosts/*/etc/sysconfig/iptables",
        ],
    },
    Target {
        name: "nft_text",
        run: |d| {
            let t = text(d);
            let _ = firewall::nft_text::parse(&t);
            let _ = multicast::firewall::parse_nft(&t);
        },
        seeds: &[
            "fixtures/firewall/*.nft",
            "fixtures/hosts/*/etc/nftables.conf",
        ],
    },
    Target {
        name: "nft_json",
        run: |d| {
            let _ = firewall::nft::parse_json(&text(d));
        },
        seeds: &["fixtures/firewall/*.json"],
    },
    Target {
        name: "kubeconfig",
        run: |d| {
            let t = text(d);
            let _ = connect::parse_kubeconfig(&t);
            let _ = join::steps::Kubeconfig::parse(&t);
        },
        seeds: &[],
    },
    Target {
        name: "kubelet_config",
        run: |d| {
            let _ = kubelet::parse(&text(d));
        },
        seeds: &["fixtures/hosts/*/var/lib/kubelet/config.yaml"],
    },
    Target {
        name: "igmp",
        run: |d| {
            let t = text(d);
            let _ = multicast::evidence::parse_igmp(&t);
            let _ = multicast::evidence::parse_igmp6(&t);
        },
        seeds: &[],
    },
    Target {
        name: "route",
        run: |d| {
            let t = text(d);
            let _ = procnet::parse_routes(&t);
            let _ = firewall::hostnet::parse_proc_route(&t);
        },
        seeds: &["fixtures/hosts/*/proc/net/route"],
    },
    Target {
        name: "join_command",
        run: |d| {
            let t = text(d);
            if let Ok(words) = join::command::shell_words(&t)
                && let Ok(cmd) = join::command::JoinCommand::parse(&words)
            {
                let _ = join::steps::parse(&cmd);
            }
            let words: Vec<String> = t.split(' ').map(String::from).collect();
            if let Ok(cmd) = join::command::JoinCommand::parse(&words) {
                let _ = join::steps::parse(&cmd);
            }
        },
        seeds: &[],
    },
    Target {
        name: "http_response",
        run: |d| {
            for eof in [false, true] {
                let _ = join::net::parse_response(d, eof);
            }
        },
        seeds: &[],
    },
    Target {
        name: "probe_wire",
        run: |d| {
            let _ = multicast::wire::parse(d);
            let _ = multicast::wire::number(d);
        },
        seeds: &[],
    },
    Target {
        name: "probe_control",
        run: |d| {
            let _ = serde_json::from_slice::<multicast::control::Msg>(d);
        },
        seeds: &[],
    },
    Target {
        name: "join_replay",
        run: |d| {
            // A join-check recording's entries, judged as a replay judges them.
            if let Ok(entries) = serde_json::from_slice::<Vec<crate::core::tape::Entry>>(d) {
                let steps = join::STEPS.iter().map(|s| s.to_string()).collect();
                let recorded = crate::core::tape::Recorded {
                    root: "/".into(),
                    live: true,
                    live_network: false,
                };
                let _ = join::bundle::replay_tape(
                    &join::JoinOptions::default(),
                    crate::core::tape::Replay::new(entries, steps),
                    &recorded,
                    std::time::SystemTime::UNIX_EPOCH,
                    std::time::Duration::from_secs(10),
                );
            }
        },
        seeds: &[],
    },
    Target {
        name: "bundle",
        run: |d| {
            let _ = bundle::reader::read(d);
        },
        seeds: &[],
    },
    Target {
        name: "bundle_tar",
        run: |d| {
            let _ = bundle::reader::read_tar(d);
        },
        seeds: &[],
    },
    Target {
        name: "fleet_bundle",
        run: |d| {
            let _ = bundle::fleet::verify_from(d);
        },
        seeds: &[],
    },
    Target {
        name: "bundle_frame",
        run: |d| {
            let _ = bundle::frame::find(&String::from_utf8_lossy(d));
        },
        seeds: &[],
    },
];

/// The target called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
}

//! CLI and whole-ruleset tests of the firewall area on saved inputs (no privileges needed).

mod support;

use k8sdoctor::firewall::{
    Net, Query, Verdict, evaluate, iptables,
    model::{Family, Origin},
};

#[test]
fn a_20000_rule_kube_proxy_ruleset_parses_and_decides() {
    let text = support::kube_proxy::ruleset(20_000);
    let rs = iptables::parse(&text, Origin::IptablesNft, Family::Ip).unwrap();
    assert!(rs.rule_count() >= 20_000, "{}", rs.rule_count());
    let node: Net = "192.168.1.0/24".parse().unwrap();
    let a = evaluate(&rs, &Query::tcp(6443, node).on("eth0"));
    assert_eq!(a.verdict(), Verdict::Accept, "{:?}", a.explain());
    // NodePort 30009 belongs to a service without endpoints: kube-proxy rejects it on the input path.
    let a = evaluate(&rs, &Query::tcp(30009, node).on("eth0"));
    assert_eq!(a.verdict(), Verdict::Reject, "{:?}", a.explain());
    let d = a.decisive();
    assert_eq!(d.rule.as_ref().unwrap().chain, "KUBE-EXTERNAL-SERVICES");
    assert_eq!(d.path[0].position, Some(3));
}

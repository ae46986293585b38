use super::*;

fn parse(extra: &str) -> Result<IssuerConfig, String> {
    let text = format!(
        r#"
issuer = "https://token.actions.githubusercontent.com"
discovery = true
audiences = ["warrant"]
algorithms = ["ES256"]
{extra}
"#
    );
    toml::from_str::<IssuerConfig>(&text).map_err(|e| e.to_string())
}

const WORKLOAD: &str = r#"
[workload]
repository_claim = "repository"
ref_claim = "ref"
"#;

#[test]
fn a_github_actions_issuer_parses_with_defaults() {
    let c = parse(WORKLOAD).unwrap();
    assert_eq!(
        c.keys,
        KeySource::Discovery(
            Url::parse(
                "https://token.actions.githubusercontent.com/.well-known/openid-configuration"
            )
            .unwrap()
        )
    );
    assert_eq!(c.max_clock_skew, DEFAULT_CLOCK_SKEW);
    assert_eq!(c.jwks_ttl, DEFAULT_JWKS_TTL);
    assert_eq!(c.jwks_max_staleness, DEFAULT_JWKS_STALENESS);
    let IssuerRole::Workload(rules) = c.role else {
        panic!("expected a workload issuer")
    };
    assert_eq!(rules.repository_claim.as_deref(), Some("repository"));
}

#[test]
fn none_and_hmac_cannot_be_allowed() {
    for alg in ["none", "HS256", "HS512", "PS256"] {
        let text = format!(
            "issuer = \"https://i.example\"\ndiscovery = true\naudiences = [\"a\"]\nalgorithms = [\"{alg}\"]\n{WORKLOAD}"
        );
        let err = toml::from_str::<IssuerConfig>(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not allowed"), "{alg}: {err}");
    }
}

#[test]
fn plain_http_needs_the_dangerous_loopback_allowance() {
    let text = |issuer: &str, allow: bool| {
        format!(
            "issuer = \"{issuer}\"\ndiscovery = true\naudiences = [\"a\"]\nalgorithms = [\"ES256\"]\ndangerous_allow_http_loopback = {allow}\n{WORKLOAD}"
        )
    };
    let e = toml::from_str::<IssuerConfig>(&text("http://127.0.0.1:9", false)).unwrap_err();
    assert!(e.to_string().contains("https is required"), "{e}");
    assert!(toml::from_str::<IssuerConfig>(&text("http://127.0.0.1:9", true)).is_ok());
    assert!(toml::from_str::<IssuerConfig>(&text("http://localhost:9", true)).is_ok());
    let e = toml::from_str::<IssuerConfig>(&text("http://issuer.example", true)).unwrap_err();
    assert!(e.to_string().contains("https is required"), "{e}");
}

#[test]
fn durations_are_bounded() {
    let e = parse(&format!("max_clock_skew = \"10m\"\n{WORKLOAD}")).unwrap_err();
    assert!(e.contains("max_clock_skew"), "{e}");
    let e = parse(&format!("jwks_ttl = \"1s\"\n{WORKLOAD}")).unwrap_err();
    assert!(e.contains("jwks_ttl"), "{e}");
    let e = parse(&format!(
        "jwks_ttl = \"10m\"\njwks_max_staleness = \"5m\"\n{WORKLOAD}"
    ))
    .unwrap_err();
    assert!(e.contains("jwks_max_staleness"), "{e}");
    let c = parse(&format!(
        "max_clock_skew = \"5m\"\njwks_max_staleness = \"2h\"\n{WORKLOAD}"
    ))
    .unwrap();
    assert_eq!(c.max_clock_skew, SignedDuration::from_mins(5));
    assert_eq!(c.jwks_max_staleness, SignedDuration::from_hours(2));
}

#[test]
fn unknown_fields_are_refused() {
    let e = parse(&format!("audience = \"x\"\n{WORKLOAD}")).unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
    let e = parse("[workload]\nrepo_claim = \"repository\"").unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn a_workload_issuer_needs_a_rule_and_exactly_one_role() {
    let e = parse("[workload]\n").unwrap_err();
    assert!(e.contains("at least one claim rule"), "{e}");
    let e = parse("").unwrap_err();
    assert!(e.contains("exactly one"), "{e}");
    let e = parse(&format!("{WORKLOAD}\n[human]\nuser_claim = \"email\"")).unwrap_err();
    assert!(e.contains("exactly one"), "{e}");
    let c = parse("[workload.required]\nrepository_owner = [\"acme\", \"acme-labs\"]").unwrap();
    let IssuerRole::Workload(rules) = c.role else {
        panic!("expected a workload issuer")
    };
    assert_eq!(rules.required["repository_owner"], ["acme", "acme-labs"]);
}

#[test]
fn the_key_source_is_discovery_or_a_jwks_uri() {
    let text = |src: &str| {
        format!(
            "issuer = \"https://i.example/\"\naudiences = [\"a\"]\nalgorithms = [\"ES256\"]\n{src}\n{WORKLOAD}"
        )
    };
    let c = toml::from_str::<IssuerConfig>(&text("jwks_uri = \"https://i.example/keys\"")).unwrap();
    assert_eq!(
        c.keys,
        KeySource::Jwks(Url::parse("https://i.example/keys").unwrap())
    );
    let c = toml::from_str::<IssuerConfig>(&text("discovery = true")).unwrap();
    assert_eq!(
        c.keys,
        KeySource::Discovery(
            Url::parse("https://i.example/.well-known/openid-configuration").unwrap()
        )
    );
    for bad in [
        "",
        "discovery = true\njwks_uri = \"https://i.example/keys\"",
    ] {
        let e = toml::from_str::<IssuerConfig>(&text(bad)).unwrap_err();
        assert!(e.to_string().contains("either"), "{e}");
    }
}

#[test]
fn spiffe_subjects_take_a_strict_trust_domain() {
    let c = parse("[workload]\nsubject = \"spiffe\"\nspiffe_trust_domain = \"example.org\"\n[workload.required]\nsub = \"spiffe://example.org/ci\"").unwrap();
    let IssuerRole::Workload(rules) = c.role else {
        panic!("expected a workload issuer")
    };
    assert_eq!(rules.subject, SubjectKind::Spiffe);
    let e = parse("[workload]\nsubject = \"spiffe\"\nspiffe_trust_domain = \"Example.org\"\nref_claim = \"ref\"").unwrap_err();
    assert!(e.contains("spiffe_trust_domain"), "{e}");
    let e = parse("[workload]\nspiffe_trust_domain = \"example.org\"\nref_claim = \"ref\"")
        .unwrap_err();
    assert!(e.contains("subject"), "{e}");
}

use super::*;
use SpiffeIdError as E;

const RUN: &str = "0192f5a4-7c1e-7b3a-9d2e-5f8a1b2c3d4e";

/// go-spiffe's `TestFromString` cases, plus the ones its rules imply.
#[test]
fn spiffe_id_table() {
    let long_path = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 12));
    let too_long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 11));
    let long_td = format!("spiffe://{}", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
    let cases: Vec<(&str, Result<(), E>)> = vec![
        ("spiffe://trustdomain", Ok(())),
        ("spiffe://trustdomain/path", Ok(())),
        ("spiffe://trustdomain/path/element", Ok(())),
        ("spiffe://trust-domain.example_1/Path/E-l.e_m3nt", Ok(())),
        ("spiffe://td/..a/.b/c.", Ok(())),
        (long_path.as_str(), Ok(())),
        ("", Err(E::Empty)),
        (too_long.as_str(), Err(E::TooLong)),
        (long_td.as_str(), Err(E::TrustDomainTooLong)),
        ("http://trustdomain/path", Err(E::WrongScheme)),
        ("SPIFFE://trustdomain/path", Err(E::WrongScheme)),
        ("spiffe:/trustdomain/path", Err(E::WrongScheme)),
        ("trustdomain/path", Err(E::WrongScheme)),
        ("spiffe://", Err(E::MissingTrustDomain)),
        ("spiffe:///path", Err(E::MissingTrustDomain)),
        ("spiffe://Trustdomain", Err(E::BadTrustDomainChar)),
        ("spiffe://trustdomain:8080", Err(E::BadTrustDomainChar)),
        ("spiffe://user@trustdomain", Err(E::BadTrustDomainChar)),
        (
            "spiffe://user:pass@trustdomain/path",
            Err(E::BadTrustDomainChar),
        ),
        ("spiffe://trustdomain?q=1", Err(E::BadTrustDomainChar)),
        ("spiffe://trustdomain#f", Err(E::BadTrustDomainChar)),
        ("spiffe://trust%20domain", Err(E::BadTrustDomainChar)),
        ("spiffe://trustdomain/", Err(E::EmptySegment)),
        ("spiffe://trustdomain//path", Err(E::EmptySegment)),
        ("spiffe://trustdomain/path/", Err(E::EmptySegment)),
        ("spiffe://trustdomain/.", Err(E::DotSegment)),
        ("spiffe://trustdomain/./path", Err(E::DotSegment)),
        ("spiffe://trustdomain/path/..", Err(E::DotSegment)),
        ("spiffe://trustdomain/path?query", Err(E::BadPathChar)),
        ("spiffe://trustdomain/path#fragment", Err(E::BadPathChar)),
        ("spiffe://trustdomain/pa%20th", Err(E::BadPathChar)),
        ("spiffe://trustdomain/pa th", Err(E::BadPathChar)),
        ("spiffe://trustdomain/pat\u{e9}", Err(E::BadPathChar)),
        ("spiffe://trustdomain/a:b", Err(E::BadPathChar)),
    ];
    for (input, want) in cases {
        let got = SpiffeId::parse(input);
        assert_eq!(
            got.as_ref().map(|_| ()),
            want.as_ref().map(|_| ()),
            "{input}"
        );
        if let Ok(id) = got {
            assert_eq!(id.to_string(), input, "round trip");
        }
    }
}

#[test]
fn run_ids_round_trip() {
    let s = format!("spiffe://warrant.example/agent/claude-code/run/{RUN}");
    let id = RunSpiffeId::parse(&s).unwrap();
    assert_eq!(id.trust_domain.as_str(), "warrant.example");
    assert_eq!(id.agent.as_str(), "claude-code");
    assert_eq!(id.run.to_string(), RUN);
    assert_eq!(id.to_string(), s);

    let fresh = RunSpiffeId::new(
        TrustDomain::parse("td").unwrap(),
        Name::parse("agent", "bot").unwrap(),
        RunId::at(Timestamp::from_second(1_700_000_000).unwrap()),
    );
    assert_eq!(RunSpiffeId::parse(&fresh.to_string()).unwrap(), fresh);
    assert_eq!(fresh.run.0.get_version_num(), 7);
}

#[test]
fn run_id_table() {
    let upper = RUN.to_uppercase();
    let simple = RUN.replace('-', "");
    for bad in [
        "spiffe://td".to_owned(),
        "spiffe://td/agent/bot".to_owned(),
        format!("spiffe://td/agent/bot/run/{RUN}/extra"),
        format!("spiffe://td/agents/bot/run/{RUN}"),
        format!("spiffe://td/agent/bot/runs/{RUN}"),
        format!("spiffe://td/agent/Bot/run/{RUN}"),
        format!("spiffe://td/agent/-bot/run/{RUN}"),
        "spiffe://td/agent/bot/run/not-a-uuid".to_owned(),
        format!("spiffe://td/agent/bot/run/{upper}"),
        format!("spiffe://td/agent/bot/run/{simple}"),
        format!("spiffe://td/agent/bot/run/{{{RUN}}}"),
    ] {
        assert!(
            matches!(
                RunSpiffeId::parse(&bad),
                Err(E::NotARunId(_)) | Err(E::BadPathChar)
            ),
            "{bad}"
        );
    }
    // Errors of the underlying id come through unchanged.
    assert_eq!(
        RunSpiffeId::parse(&format!("spiffe://TD/agent/bot/run/{RUN}")),
        Err(E::BadTrustDomainChar)
    );
}

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml(text, &ServeOptions::default())
}

#[test]
fn empty_file_gives_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.store_url, "sqlite://./warrant-data/warrant.db");
    assert_eq!(c.ttl, TtlBounds::default());
    assert_eq!(c.reaper_interval, Duration::from_secs(5));
    assert_eq!(c.checkpoint_every, 1000);
    assert_eq!(c.checkpoint_interval, Duration::from_secs(60));
    assert!(c.agents.is_empty());
}

#[test]
fn the_documented_example_parses() {
    let c = parse(
        r#"
trust_domain = "warrant.local"
listen = "127.0.0.1:9000"
data_dir = "/tmp/w"
store = "postgres://warrant@127.0.0.1:5432/warrant"
[tasks]
max_ttl = "4h"
default_ttl = "30m"
reaper_interval = "2s"
[audit]
checkpoint_every = 10
checkpoint_interval = "1m"
[[agents]]
name = "claude-code"
tier = "propose"
owner = "admin"
description = "Claude Code in CI"
"#,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.store_url, "postgres://warrant@127.0.0.1:5432/warrant");
    assert_eq!(c.ttl.max, jiff::SignedDuration::from_hours(4));
    assert_eq!(c.ttl.default, jiff::SignedDuration::from_mins(30));
    assert_eq!(c.reaper_interval, Duration::from_secs(2));
    assert_eq!(c.checkpoint_every, 10);
    assert_eq!(c.agents.len(), 1);
    assert_eq!(c.agents[0].tier, Tier::Propose);
    assert_eq!(c.agents[0].owner.as_ref().map(Name::as_str), Some("admin"));
}

#[test]
fn options_beat_the_file() {
    let opts = ServeOptions {
        data_dir: Some(PathBuf::from("/flag/dir")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        store_url: None,
        config_file: None,
    };
    let c = Config::from_toml("data_dir = \"/file/dir\"\nlisten = \"0.0.0.0:1\"", &opts).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/flag/dir"));
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.store_url, "sqlite:///flag/dir/warrant.db");
}

#[test]
fn mistakes_are_named() {
    let cases = [
        ("colour = \"blue\"", "unknown field `colour`"),
        ("[tasks]\nmax_tll = \"1h\"", "unknown field `max_tll`"),
        ("[tasks]\nmax_ttl = \"forever\"", "`tasks.max_ttl`"),
        (
            "[tasks]\nreaper_interval = \"0s\"",
            "`tasks.reaper_interval`",
        ),
        ("[tasks]\nmax_ttl = \"30s\"", "`tasks.max_ttl`"),
        (
            "[tasks]\nmax_ttl = \"1h\"\ndefault_ttl = \"2h\"",
            "`tasks.default_ttl`",
        ),
        ("[audit]\ncheckpoint_every = 0", "`audit.checkpoint_every`"),
        ("listen = \"localhost\"", "`listen`"),
        ("trust_domain = \"Not A Domain\"", "`trust_domain`"),
        (
            "[[agents]]\nname = \"Bad Name\"\ntier = \"propose\"",
            "`agents[0]`",
        ),
        ("[[agents]]\nname = \"a\"\ntier = \"god\"", "tier `god`"),
        (
            "[[agents]]\nname = \"a\"\ntier = \"propose\"\n[[agents]]\nname = \"a\"\ntier = \"propose\"",
            "declared twice",
        ),
        ("listen = 5", "invalid type"),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warrant.toml");
    std::fs::write(&path, "[audit]\ncheckpoint_interval = \"soon\"\n").unwrap();
    let opts = ServeOptions {
        config_file: Some(path.clone()),
        ..ServeOptions::default()
    };
    let err = Config::load(&opts).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("`audit.checkpoint_interval`"), "{err}");

    let missing = ServeOptions {
        config_file: Some(dir.path().join("nope.toml")),
        ..ServeOptions::default()
    };
    let err = Config::load(&missing).unwrap_err().to_string();
    assert!(
        err.contains("nope.toml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn max_delegation_depth_defaults_to_3_and_is_bounded() {
    let opts = ServeOptions::default();
    assert_eq!(
        Config::from_toml("", &opts).unwrap().max_delegation_depth,
        3
    );
    let c = Config::from_toml("[tokens]\nmax_delegation_depth = 1\n", &opts).unwrap();
    assert_eq!(c.max_delegation_depth, 1);
    let e = Config::from_toml("[tokens]\nmax_delegation_depth = 99\n", &opts).unwrap_err();
    assert!(e.contains("tokens.max_delegation_depth"), "{e}");
}

const WORKLOAD_ISSUER: &str = r#"
[[issuers]]
issuer = "https://token.actions.githubusercontent.com"
discovery = true
audiences = ["https://warrant.example.com"]
algorithms = ["RS256"]
max_clock_skew = "60s"
jwks_ttl = "10m"
jwks_max_staleness = "1h"
[issuers.workload]
repository_claim = "repository"
ref_claim = "ref"
required = { repository_owner = "acme" }
"#;

#[test]
fn workload_issuers_parse_into_the_typed_config() {
    let c = parse(WORKLOAD_ISSUER).unwrap();
    assert_eq!(c.issuers.len(), 1);
    assert_eq!(
        c.issuers[0].issuer,
        "https://token.actions.githubusercontent.com"
    );
    assert!(parse("").unwrap().issuers.is_empty());
}

#[test]
fn bad_and_duplicate_issuers_are_refused_and_human_ones_parse() {
    let twice = format!("{WORKLOAD_ISSUER}{WORKLOAD_ISSUER}");
    let e = parse(&twice).unwrap_err();
    assert!(e.contains("declared twice"), "{e}");
    let human = r#"
[[issuers]]
issuer = "https://idp.example.com"
discovery = true
audiences = ["warrant"]
algorithms = ["RS256"]
[issuers.human]
user_claim = "preferred_username"
"#;
    let c = parse(human).unwrap();
    assert!(matches!(
        c.issuers[0].role,
        warrant_identity::IssuerRole::Human(_)
    ));
    // One `iss` is one issuer, whatever its role.
    let both = format!(
        "{WORKLOAD_ISSUER}{}",
        human.replace(
            "https://idp.example.com",
            "https://token.actions.githubusercontent.com"
        )
    );
    let e = parse(&both).unwrap_err();
    assert!(e.contains("declared twice"), "{e}");
    // The identity crate's own checks apply: never HMAC, http only on loopback.
    let hmac = WORKLOAD_ISSUER.replace("RS256", "HS256");
    assert!(parse(&hmac).is_err());
    let http = WORKLOAD_ISSUER.replace("https://token", "http://token");
    assert!(parse(&http).is_err());
}

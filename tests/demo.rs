//! `honua demo` as a newcomer runs it: the binary alone, on loopback, in a temporary directory. It
//! exits 0 only if every step of the README's three examples really happened.

/// `honua demo --ci` with `args`: its output, once it exited 0.
fn demo(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_honua"))
        .args(["demo", "--ci"])
        .args(args)
        .env_remove("HONUA_SERVER")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn the_demo_runs_the_whole_loop_and_every_step_happens() {
    let text = demo(&[]);
    for line in [
        "✓ development: applied automatically; Honua serves transportation::bike_lanes",
        "✓ staging: applied automatically; Honua serves transportation::bike_lanes",
        "awaits approval (autoApprove is false for this environment); Honua does not serve it yet",
        "│ + ┆ layer ┆ transportation::bike_lanes ┆ added   │",
        "│ ~ ┆ layer ┆ cadastre::parcels ┆ caching.ttl: 3600 -> 7200 │",
        "✓ production: Honua serves parcels with caching.ttl 7200",
        "parcels TTL is 3600 again",
        "✓ every step happened",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("\u{1b}["), "no colour with --ci");
}

/// `honua demo --format hcl`: the same tour on the Configuration 2.0 example, against stand-ins that
/// read one HCL file by their watcher.
#[test]
fn the_demo_runs_on_configuration_2_0() {
    let text = demo(&["--format", "hcl"]);
    for line in [
        "config repository with Configuration 2.0 (HCL)",
        "✓ staging: applied automatically; Honua serves ogc_api::bike_lanes_ogc_api and wfs::bike_lanes_wfs",
        "│ + ┆ layer ┆ bike_lanes ┆ added   │",
        "│ ~ ┆ rate_limit ┆ rate_limit ┆ rules.default.requests: 1000 -> 2000 │",
        "✓ production: Honua serves rate_limit.rules.default.requests 2000",
        "the rate limit is 1000 requests a minute again",
        "✓ every step happened",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

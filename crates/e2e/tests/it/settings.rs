//! `.env.example` is the operator's list of settings: every setting a service reads is in it
//! (with its default, or commented out when it has none), and nothing in it is read by no one.

use std::collections::BTreeSet;

use serde::Serialize;

/// Read from the environment outside the services' `Settings` structs: `CONFIG_FILE` and
/// `LOG_FORMAT` by `bootstrap::settings`/`bootstrap::telemetry`, `RUST_LOG` by the log filter.
const READ_OUTSIDE_SETTINGS: [&str; 3] = ["CONFIG_FILE", "LOG_FORMAT", "RUST_LOG"];

/// The environment names of a service's settings: its fields (flattened ones included), in
/// upper case, as `bootstrap::settings::load` maps them.
fn names(settings: &impl Serialize) -> BTreeSet<String> {
    let value = serde_json::to_value(settings).expect("settings serialize");
    value
        .as_object()
        .expect("settings are a flat object")
        .keys()
        .map(|key| key.to_uppercase())
        .collect()
}

/// The names `.env.example` lists, set (`NAME=value`) or commented out (`# NAME=`).
fn listed() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.env.example");
    let text = std::fs::read_to_string(path).expect(".env.example exists");
    text.lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn env_example_lists_every_setting_the_services_read_and_nothing_else() {
    let url = "postgres://127.0.0.1/unused";
    let key = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";
    let mut read: BTreeSet<String> = READ_OUTSIDE_SETTINGS.map(str::to_owned).into();
    read.extend(names(&api::Settings::new(url, "admin-secret", key)));
    read.extend(names(&ingest::Settings::new(url, "webhook-secret", key)));
    read.extend(names(&worker::Settings::new(url)));
    assert!(
        read.len() > 40,
        "every service's settings were found: {read:?}"
    );

    let listed = listed();
    let missing: Vec<&String> = read.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "settings the services read but .env.example does not list: {missing:?}"
    );
    let unread: Vec<&String> = listed.difference(&read).collect();
    assert!(
        unread.is_empty(),
        ".env.example lists settings no service reads: {unread:?}"
    );
}

//! `simulate`: replays realistic Dialpad webhooks against a running stack.
//!
//! Signs each JSON event file with HS256 exactly as Dialpad does (the compact JWT is the whole
//! body) and POSTs it to ingest. Two modes:
//!
//! - `--app-id ID --secret S`: post to `/webhooks/dialpad/ID`, signed with `S`.
//! - `--internal-secret S` (or `INTERNAL_API_SECRET`): create a new app through the api, post
//!   to its route with its generated secret, then poll `GET /api/calls` with its key until every
//!   posted call shows all its events, and print that response.
//!
//! Files default to the outbound call lifecycle in `testdata/dialpad/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const USAGE: &str = "usage: simulate [--ingest-url URL] [--api-url URL] \
[--internal-secret S | --app-id ID --secret S] [FILE.json ...]

  --ingest-url       ingest base URL (env INGEST_URL, default http://127.0.0.1:8081)
  --api-url          api base URL (env API_URL, default http://127.0.0.1:8080)
  --internal-secret  admin secret: create an app, replay, print GET /api/calls (env INTERNAL_API_SECRET)
  --app-id, --secret post to an existing app's route with its webhook secret
  FILE.json          Dialpad event payloads (default: call_outbound_0*.json in $FIXTURES_DIR,
                     else the repository's testdata/dialpad)";

const DEFAULT_FILES: [&str; 5] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
];

#[derive(Debug, Default)]
struct Args {
    ingest_url: Option<String>,
    api_url: Option<String>,
    internal_secret: Option<String>,
    app_id: Option<String>,
    secret: Option<String>,
    files: Vec<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args::default();
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        let mut value = || {
            raw.next()
                .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--ingest-url" => args.ingest_url = Some(value()?),
            "--api-url" => args.api_url = Some(value()?),
            "--internal-secret" => args.internal_secret = Some(value()?),
            "--app-id" => args.app_id = Some(value()?),
            "--secret" => args.secret = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            flag if flag.starts_with("--") => bail!("unknown option {flag}\n\n{USAGE}"),
            file => args.files.push(PathBuf::from(file)),
        }
    }
    if args.files.is_empty() {
        let dir = std::env::var_os("FIXTURES_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dialpad"),
            PathBuf::from,
        );
        args.files = DEFAULT_FILES.iter().map(|f| dir.join(f)).collect();
    }
    Ok(args)
}

/// An app to post to: its id, webhook secret and (when we created it) API key.
struct Target {
    app_id: String,
    secret: String,
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let env = |name: &str| std::env::var(name).ok();
    let ingest_url = args
        .ingest_url
        .or_else(|| env("INGEST_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:8081".into());
    let api_url = args
        .api_url
        .or_else(|| env("API_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let target = match (
        args.app_id,
        args.secret,
        args.internal_secret.or_else(|| env("INTERNAL_API_SECRET")),
    ) {
        (Some(app_id), Some(secret), _) => Target {
            app_id,
            secret,
            api_key: None,
        },
        (None, None, Some(internal)) => create_app(&http, &api_url, &internal).await?,
        _ => bail!("give --app-id with --secret, or --internal-secret\n\n{USAGE}"),
    };

    let mut expected_events: BTreeMap<String, usize> = BTreeMap::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let event: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        if let Some(call_id) = event.get("call_id") {
            *expected_events.entry(call_id.to_string()).or_default() += 1;
        }
        let token = ingest::signature::sign(&event, target.secret.as_bytes())?;
        let url = format!("{ingest_url}/webhooks/dialpad/{}", target.app_id);
        let response = http
            .post(&url)
            .header("content-type", "application/jwt")
            .body(token)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("POST {name} -> {status} {body}");
        if !status.is_success() {
            bail!("ingest refused {name}");
        }
    }

    let Some(api_key) = target.api_key else {
        return Ok(());
    };
    let calls = wait_for_calls(&http, &api_url, &api_key, &expected_events).await?;
    println!(
        "\nGET /api/calls ->\n{}",
        serde_json::to_string_pretty(&calls)?
    );
    Ok(())
}

async fn create_app(
    http: &reqwest::Client,
    api_url: &str,
    internal_secret: &str,
) -> anyhow::Result<Target> {
    let response = http
        .post(format!("{api_url}/internal/apps"))
        .bearer_auth(internal_secret)
        .json(&json!({ "name": "simulate" }))
        .send()
        .await
        .context("cannot reach the api")?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("creating the app failed: {status} {body}");
    }
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {body}"))
    };
    println!("Created app {}", field("app_id")?);
    Ok(Target {
        app_id: field("app_id")?,
        secret: field("webhook_secret")?,
        api_key: Some(field("api_key")?),
    })
}

/// Polls `GET /api/calls` until each posted call shows all of its events (or 15 s pass).
async fn wait_for_calls(
    http: &reqwest::Client,
    api_url: &str,
    api_key: &str,
    expected: &BTreeMap<String, usize>,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls: Value = http
            .get(format!("{api_url}/api/calls"))
            .header("x-app-api-key", api_key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let seen: BTreeMap<String, i64> = calls["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["call_id"].as_str()?.to_owned(),
                    c["event_count"].as_i64()?,
                ))
            })
            .collect();
        let complete = expected.iter().all(|(call_id, count)| {
            let call_id = call_id.trim_matches('"');
            seen.get(call_id)
                .is_some_and(|n| usize::try_from(*n).is_ok_and(|n| n >= *count))
        });
        if complete || Instant::now() > deadline {
            if !complete {
                eprintln!(
                    "warning: not every event was processed within 15 s (is the worker running?)"
                );
            }
            return Ok(calls);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! What deployment relies on: the binaries' `healthcheck` command passes only while the
//! service is ready, and the Dockerfile, docker-compose.yml and the Render Blueprint name the
//! right commands.

use e2e::TestStack;
use yaml_rust2::{Yaml, YamlLoader};

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_healthcheck_command_passes_only_while_the_service_is_ready() {
    let stack = TestStack::spawn().await;
    for url in [&stack.api_url, &stack.ingest_url] {
        bootstrap::cli::healthcheck(port_of(url), "PORT")
            .await
            .unwrap_or_else(|e| panic!("{url} is ready: {e:#}"));
    }
    let unknown = bootstrap::cli::healthcheck(0, "METRICS_PORT")
        .await
        .expect_err("port 0 cannot be checked");
    assert!(unknown.to_string().contains("METRICS_PORT"), "{unknown}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nothing = bootstrap::cli::healthcheck(closed, "PORT")
        .await
        .expect_err("nothing listens");
    assert!(
        format!("{nothing:#}").contains("nothing answers"),
        "{nothing:#}"
    );

    // An ingest whose database is cut answers /readyz 503: not healthy.
    let proxy = e2e::CuttableProxy::in_front_of(stack.db.url()).await;
    let port = stack
        .spawn_ingest(e2e::ingest_settings(&proxy.url_for(stack.db.url())))
        .await;
    bootstrap::cli::healthcheck(port, "PORT")
        .await
        .expect("ready through the proxy");
    proxy.cut();
    let down = bootstrap::cli::healthcheck(port, "PORT")
        .await
        .expect_err("not ready without its database");
    assert!(down.to_string().contains("503"), "{down}");
    proxy.restore();
}

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path} parses: {e}"))
        .remove(0)
}

fn strings(yaml: &Yaml) -> Vec<&str> {
    yaml.as_vec()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("a string"))
        .collect()
}

#[test]
fn compose_blueprint_and_dockerfile_name_the_right_commands() {
    let compose = load("docker-compose.yml");
    let services = &compose["services"];
    assert_eq!(
        strings(&services["migrate"]["command"]),
        ["worker", "migrate"]
    );
    for binary in ["ingest", "api", "worker"] {
        let service = &services[binary];
        assert_eq!(strings(&service["command"]), [binary], "compose {binary}");
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            ["CMD", binary, "healthcheck"],
            "compose {binary}'s health check runs its own binary"
        );
    }
    assert_eq!(
        services["worker"]["environment"]["METRICS_PORT"].as_str(),
        Some("9090")
    );
    // Ingest's outage spool is on a volume, so spooled webhooks outlive the container.
    let spool_dir = services["ingest"]["environment"]["INGEST_SPOOL_DIR"]
        .as_str()
        .expect("compose ingest has INGEST_SPOOL_DIR");
    assert!(
        strings(&services["ingest"]["volumes"])
            .iter()
            .any(|volume| volume.ends_with(&format!(":{spool_dir}"))),
        "compose mounts a volume at the spool"
    );

    let blueprint = load("deploy/render.yaml");
    let render_services = blueprint["services"].as_vec().expect("services");
    let mut seen = Vec::new();
    for service in render_services {
        let binary = service["dockerCommand"].as_str().expect("dockerCommand");
        seen.push(binary);
        assert_eq!(
            service["preDeployCommand"].as_str(),
            Some(format!("{binary} migrate").as_str()),
            "Render {binary} migrates before it starts"
        );
        assert_eq!(
            service["dockerfilePath"].as_str(),
            Some("./deploy/Dockerfile")
        );
        let kind = service["type"].as_str().expect("type");
        let env: Vec<&str> = service["envVars"]
            .as_vec()
            .expect("envVars")
            .iter()
            .filter_map(|var| var["key"].as_str())
            .collect();
        if binary == "ingest" {
            let spool_dir = service["envVars"]
                .as_vec()
                .expect("envVars")
                .iter()
                .find(|var| var["key"].as_str() == Some("INGEST_SPOOL_DIR"))
                .and_then(|var| var["value"].as_str());
            assert_eq!(
                service["disk"]["mountPath"].as_str(),
                spool_dir,
                "Render ingest's spool is on its persistent disk"
            );
            assert!(spool_dir.is_some());
        }
        if binary == "worker" {
            assert_eq!(kind, "worker");
            assert!(env.contains(&"METRICS_PORT"), "{env:?}");
        } else {
            assert_eq!(kind, "web", "{binary}");
            assert!(service["healthCheckPath"].as_str().is_some(), "{binary}");
            assert!(env.contains(&"PORT"), "{binary}: {env:?}");
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, ["api", "ingest", "worker"]);

    let dockerfile = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/Dockerfile"),
    )
    .expect("the Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|line| line.starts_with("HEALTHCHECK ")
                && line.ends_with(r#"CMD ["api", "healthcheck"]"#)),
        "the image's health check runs the default binary's healthcheck"
    );
    assert!(
        !dockerfile
            .lines()
            .any(|line| line.contains("--no-install-recommends") && line.contains("curl")),
        "no curl installed in the image"
    );
}

/// The metric names in a Prometheus query expression: identifiers of our metrics' families, with a
/// histogram's `_bucket`, `_count` and `_sum` series named by their family.
fn metric_names(expr: &str) -> Vec<String> {
    const FAMILIES: [&str; 7] = [
        "http_", "ingest_", "queue_", "worker_", "push_", "api_", "db_pool_",
    ];
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| FAMILIES.iter().any(|family| token.starts_with(family)))
        .map(|token| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token)
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_alert_rules_and_the_dashboard_name_only_exported_metrics() {
    let stack = TestStack::spawn().await;
    // A refusal, so ingest's refusal counter has its `invalid_signature` series.
    let app = stack.create_app("Acme").await;
    let forged = stack
        .post_raw(
            Some(&app.app_id.to_string()),
            e2e::sign(
                &e2e::fixture("call_outbound_01_calling.json"),
                "wrong-secret",
            ),
        )
        .await;
    assert_eq!(forged.status(), 401);
    stack.start_worker();
    let worker_url = stack.worker_url().await;
    let mut exported = String::new();
    for url in [stack.ingest_url.clone(), stack.api_url.clone(), worker_url] {
        exported += &reqwest::get(format!("{url}/metrics"))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("text");
    }
    let known = |name: &str| exported.contains(&format!("# TYPE {name} "));

    let alerts = load("deploy/prometheus/alerts.yml");
    let rules: Vec<&Yaml> = alerts["groups"]
        .as_vec()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_vec().expect("rules"))
        .collect();
    assert!(
        rules.len() >= 5,
        "lag, dead letters, ingest errors, push failures, ..."
    );
    for rule in rules {
        let name = rule["alert"].as_str().expect("an alert name");
        let expr = rule["expr"].as_str().expect("an expression");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{name}: {expr}");
        for metric in names {
            assert!(
                known(&metric),
                "{name} names {metric}, which no service exports"
            );
        }
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{name}: severity"
        );
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{name}: summary"
        );
    }
    let scrape = load("deploy/prometheus/prometheus.yml");
    assert_eq!(strings(&scrape["rule_files"]), ["alerts.yml"]);
    let targets: Vec<&str> = scrape["scrape_configs"]
        .as_vec()
        .expect("scrape configs")
        .iter()
        .flat_map(|job| strings(&job["static_configs"][0]["targets"]))
        .collect();
    assert_eq!(targets, ["ingest:8081", "api:8080", "worker:9090"]);

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../deploy/grafana/cti-server.json"),
        )
        .expect("the dashboard"),
    )
    .expect("JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for metric in metric_names(expr) {
                assert!(
                    known(&metric),
                    "panel {:?} names {metric}, which no service exports",
                    panel["title"]
                );
            }
        }
    }
}

//! The operations files that ship beside the binary stay true to it: every `tollgate …`
//! command in the runbooks exists, and every alert names metrics tollgate exports and a runbook
//! that exists. (`promtool check/test rules` runs in `.ci/run`.)

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `tollgate …` commands in the fenced blocks of a Markdown file, as argument lists
/// (environment assignments before them, comments, pipes and shell variables left out).
fn commands(markdown: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.split(" #").next().unwrap_or_default();
        let line = line.split(['|', '>']).next().unwrap_or_default();
        let mut words = line.split_whitespace().skip_while(|w| w.contains('='));
        if words.next() != Some("tollgate") {
            continue;
        }
        found.push(
            words
                .filter(|w| !w.contains('$'))
                .map(str::to_string)
                .collect(),
        );
    }
    found
}

#[tokio::test]
async fn every_tollgate_command_in_the_runbooks_exists() {
    let dir = root().join("docs/runbooks");
    let mut checked = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 9, "the runbooks are there: {names:?}");
    for path in names {
        for args in commands(&read(&path)) {
            let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
            argv.push("--help");
            let (code, stdout, stderr) = crate::cli::run(&argv, &[]).await;
            assert_eq!(
                code,
                0,
                "{}: `tollgate {}` is not a command: {stderr}",
                path.display(),
                args.join(" ")
            );
            assert!(stdout.contains("Usage: tollgate"), "{stdout}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} commands found");
}

#[test]
fn every_alert_names_exported_metrics_and_an_existing_runbook() {
    let alerts = read(&root().join("deploy/prometheus/alerts.yml"));
    let mut source = String::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&read(&path));
            }
        }
    }
    let metrics = metric_names(&alerts);
    assert!(metrics.len() >= 12, "{metrics:?}");
    for name in metrics {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "alerts.yml names {name}, which tollgate does not export"
        );
    }
    let runbooks: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: "))
        .collect();
    assert_eq!(
        runbooks.len(),
        alerts.matches("- alert: ").count(),
        "every alert has a runbook"
    );
    for r in runbooks {
        assert!(root().join(r).is_file(), "{r} does not exist");
    }
}

#[test]
fn the_command_finder_reads_env_prefixes_and_skips_comments() {
    let md = "text tollgate x\n```sh\nDATABASE_URL=a tollgate restore /p # note\n\
              tollgate jobs stats | head\ncurl $URL\n```\n";
    assert_eq!(
        commands(md),
        vec![
            vec!["restore".to_string(), "/p".to_string()],
            vec!["jobs".to_string(), "stats".to_string()]
        ]
    );
}

/// Environment names set by the deploy files: `NAME=` lines (commented or not) of the env file
/// and the unit, and the keys of the ConfigMap, the Secret and compose's `environment`.
fn deploy_env_names() -> Vec<String> {
    let deploy = root().join("deploy");
    let mut names = Vec::new();
    let is_name = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
    };
    for line in read(&deploy.join("tollgate.env.example")).lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some((name, _)) = line.split_once('=')
            && is_name(name)
        {
            names.push(name.to_string());
        }
    }
    for line in read(&deploy.join("systemd/tollgate.service")).lines() {
        if let Some(rest) = line.strip_prefix("Environment=")
            && let Some((name, _)) = rest.split_once('=')
        {
            names.push(name.to_string());
        }
    }
    for file in ["kubernetes/config.yaml", "compose.yaml"] {
        for line in read(&deploy.join(file)).lines() {
            if let Some((key, _)) = line.trim().split_once(':')
                && is_name(key)
                && !key.starts_with("POSTGRES_")
            {
                names.push(key.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_environment_name_in_the_deploy_files_is_one_tollgate_documents() {
    let documented = read(&root().join("docs/configuration.md"));
    let names = deploy_env_names();
    for expected in [
        "DATABASE_URL",
        "ENCRYPTION_KEY",
        "TOLLGATE_ENVIRONMENT",
        "PUBLIC_URL",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    for name in &names {
        assert!(
            documented.contains(&format!("`{name}`")),
            "deploy/ sets {name}, which docs/configuration.md does not name"
        );
    }
}

#[tokio::test]
async fn tollgate_health_exits_0_on_a_live_server_and_1_when_nothing_answers() {
    let app = crate::helpers::spawn_app().await;
    let (code, stdout, stderr) = crate::cli::run(&["health", "--url", &app.address], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"status\":\"pass\""), "{stdout}");
    let (code, stdout, _) =
        crate::cli::run(&["health", "--ready", "--url", &app.address], &[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("\"database\""), "{stdout}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, stderr) =
        crate::cli::run(&["health", "--url", &format!("http://{closed}")], &[]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("does not answer"), "{stderr}");
}

/// The metric families a PromQL text names (histogram series folded into their family).
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tollgate_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn every_dashboard_query_names_a_metric_that_metrics_serves() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&root().join("deploy/grafana/tollgate.json"))).unwrap();
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(panel["gridPos"]["w"].as_i64().is_some(), "{panel}");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has queries");
        assert!(!targets.is_empty(), "{panel}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for t in targets {
            queries.push_str(t["expr"].as_str().unwrap());
            queries.push('\n');
        }
    }
    let names = metric_names(&queries);
    assert!(names.len() >= 20, "{names:?}");

    // Traffic that makes every family appear: a store webhook through its job into a recovery
    // nudge, a rejected delivery, AI calls (one through a fallback), and the worker's gauges.
    let shop = crate::recovery_nudges::a_shop_that_sent_a_nudge().await;
    let forged = shop
        .app
        .client
        .post(shop.app.url("/webhooks/shop/stripe"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let (ai, _openai) = crate::gateway::gateway_app().await;
    let key = ai.user_key("ai", "dash").await;
    for model in ["gpt", "broken"] {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(crate::gateway::chat(&ai, &key, body).await.status(), 200);
    }
    let missing = || async {
        let served = ai.get_metrics(None).await.text().await.unwrap();
        names
            .iter()
            .filter(|n| {
                !served
                    .lines()
                    .any(|l| l.starts_with(n.as_str()) && !l.starts_with('#'))
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    // The worker's gauges come on its own tick: wait for them, then name what is missing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !missing().await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(missing().await, Vec::<String>::new());
}

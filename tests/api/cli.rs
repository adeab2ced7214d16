//! The binary itself: configuration errors, the deploy checklist, migrations, SIGTERM.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::TestDb;

/// The tollgate binary with a clean environment plus `vars`.
pub fn tollgate(args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    cmd
}

pub async fn run(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = tollgate(args, vars).output().await.unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// A production config with a 10-character key, `*` CORS and no metrics token.
const WEAK_PRODUCTION: &[(&str, &str)] = &[
    ("TOLLGATE_ENVIRONMENT", "production"),
    ("PUBLIC_URL", "https://api.example.com"),
    ("ENCRYPTION_KEY", "0123456789"),
    ("CORS_ORIGINS", "*"),
    ("TOLLGATE_DATA_DIR", "/var/lib/tollgate"),
];

#[tokio::test]
async fn serve_refuses_a_weak_production_config_and_names_all_three_problems() {
    let (code, _, stderr) = run(&["serve"], WEAK_PRODUCTION).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("the configuration has 3 problems"),
        "{stderr}"
    );
    for key in ["encryption_key:", "http.cors_origins:", "metrics_token:"] {
        assert!(stderr.contains(key), "{key} missing in {stderr}");
    }
    assert!(!stderr.contains("0123456789"), "secrets are never printed");
}

#[tokio::test]
async fn check_lists_config_problems_before_anything_else() {
    let (code, stdout, _) = run(&["check"], WEAK_PRODUCTION).await;
    assert_eq!(code, 2);
    assert!(stdout.contains("[FAIL] configuration"), "{stdout}");
    assert!(
        stdout.contains("metrics_token: required in production"),
        "{stdout}"
    );
}

pub fn db_vars(db: &TestDb) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("TOLLGATE_DATA_DIR", db.data_dir.display().to_string()),
        ("DATABASE_URL", db.effective_url()),
    ];
    if let Some(owner) = &db.owner_url {
        vars.push(("DATABASE_OWNER_URL", owner.clone()));
    }
    vars
}

pub fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn check_fails_on_pending_migrations_and_passes_after_migrate() {
    let db = TestDb::new().await;
    let vars = db_vars(&db);
    let vars = as_refs(&vars);
    // A database that exists with nothing applied (check never creates a SQLite file).
    if let Some(file) = tollgate::store::Db::sqlite_file(&db.effective_url()) {
        std::fs::File::create(file).unwrap();
    }

    let (code, stdout, _) = run(&["check"], &vars).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("[pass] configuration: valid for development"),
        "{stdout}"
    );
    assert!(stdout.contains("[pass] database: reachable"), "{stdout}");
    assert!(
        stdout.contains("[FAIL] migrations: not applied"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("pending migrations [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&["migrate", "--status"], &vars).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("pending: 1 init"), "{stdout}");
    let (code, stdout, stderr) = run(&["migrate"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .contains("applied migrations [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&["check"], &vars).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("[pass] migrations: applied"), "{stdout}");
    if db.is_postgres() {
        // The test role is an ordinary one, so row-level security applies to it.
        assert!(
            stdout.contains("[pass] database_role: not a superuser"),
            "{stdout}"
        );
        assert!(
            stdout.contains("result: all 7 checks passed (0 warnings)"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("result: all 6 checks passed (0 warnings)"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn check_fails_when_redis_is_configured_but_down() {
    let db = TestDb::new().await;
    let mut vars = db_vars(&db);
    vars.push(("REDIS_URL", "redis://127.0.0.1:1".into()));
    let (code, stdout, _) = run(&["check"], &as_refs(&vars)).await;
    assert_eq!(code, 1);
    assert!(stdout.contains("[FAIL] redis: not reachable"), "{stdout}");
}

#[tokio::test]
async fn version_and_config_example_print_without_a_database() {
    let (code, stdout, _) = run(&["version"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("tollgate {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, stdout, _) = run(&["config", "example"], &[]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("[database]") && stdout.contains("environment = \"development\""));
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut vars = db_vars(&db);
    vars.push(("PORT", port.to_string()));
    vars.push(("TOLLGATE_LOG__FORMAT", "json".into()));
    let child = tollgate(&["serve"], &as_refs(&vars))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Wait (bounded) until it answers; development mode migrates the fresh database itself.
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut ready = false;
    for _ in 0..100 {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server became ready");

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the server exits after SIGTERM")
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("shutdown signal received"), "{stderr}");
    assert!(stderr.contains("tollgate stopped"), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string())
    );
    let request_line = lines
        .iter()
        .find(|l| l["message"] == "request" && l["route"] == "/ready")
        .expect("a log line for the /ready request");
    assert!(
        request_line["span"]["request_id"].is_string(),
        "{request_line}"
    );
}

#[tokio::test]
async fn config_seal_encrypts_a_provider_key_that_the_config_then_opens() {
    use tokio::io::AsyncWriteExt;
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let data = tempfile_dir();
    let vars = [
        ("ENCRYPTION_KEY", key),
        ("TOLLGATE_DATA_DIR", data.as_str()),
    ];
    let mut child = tollgate(&["config", "seal"], &vars)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sk-live-provider-key\n")
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let sealed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(sealed.starts_with("enc:v1:") && !sealed.contains("sk-live"));

    let env = |k: &str| {
        vec![
            ("OPENAI_API_KEY".to_string(), sealed.clone()),
            ("ENCRYPTION_KEY".to_string(), k.to_string()),
        ]
    };
    let config = tollgate::config::load_from(None, &env(key)).unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        config.providers.openai.api_key.unwrap().expose_secret(),
        "sk-live-provider-key"
    );
    // Another key: refused at load, naming the field.
    let problems = tollgate::config::load_from(None, &env(&key.replace("00", "11")))
        .unwrap_err()
        .0;
    assert!(
        problems
            .iter()
            .any(|p| p.key == "providers.openai.api_key" && p.message.contains("decrypted")),
        "{problems:?}"
    );
    // Without ENCRYPTION_KEY the CLI says what to do.
    let (code, _, stderr) = run(&["config", "seal"], &[("TOLLGATE_DATA_DIR", data.as_str())]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("ENCRYPTION_KEY"), "{stderr}");
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("tollgate-seal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

#[tokio::test]
async fn check_does_not_create_the_sqlite_file_it_checks() {
    let data = std::env::temp_dir().join(format!("tollgate-check-{}", uuid::Uuid::now_v7()));
    let data_dir = data.display().to_string();
    let (code, stdout, _) = run(&["check"], &[("TOLLGATE_DATA_DIR", data_dir.as_str())]).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("tollgate.db does not exist yet; `tollgate migrate`"),
        "{stdout}"
    );
    assert!(!data.exists(), "check created {}", data.display());
}

#[tokio::test]
async fn migrate_status_does_not_create_the_sqlite_file_it_reports_on() {
    let data = std::env::temp_dir().join(format!("tollgate-status-{}", uuid::Uuid::now_v7()));
    let data_dir = data.display().to_string();
    let vars = [("TOLLGATE_DATA_DIR", data_dir.as_str())];
    let (code, stdout, stderr) = run(&["migrate", "--status"], &vars).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("tollgate.db does not exist yet"),
        "{stdout}"
    );
    assert!(stdout.contains("pending: 1 init"), "{stdout}");
    assert!(
        !data.exists(),
        "migrate --status created {}",
        data.display()
    );
}

#[tokio::test]
async fn check_json_reports_switches_left_off_and_whether_stripe_sends_webhooks_here() {
    let db = TestDb::new().await;
    let live = db.connect().await;
    tollgate::store::migrate::run(&live).await.unwrap();
    tollgate::jobs::switches::set(&live, tollgate::jobs::switches::Switch::Processing, false)
        .await
        .unwrap();
    let (stripe, stripe_url) = crate::fake_stripe::start(&[]).await;
    let config = db.data_dir.join("check.toml");
    std::fs::write(
        &config,
        format!(
            "public_url = \"https://api.example.com\"\n\
             [[apps]]\nslug = \"shop\"\ndefault_plan = \"free\"\n\
             [[apps.plans]]\nid = \"free\"\n\
             [apps.stripe]\nwebhook_secrets = [\"whsec_test_shop_endpoint\"]\n\
             secret_key = \"{}\"\napi_base = \"{stripe_url}\"\n",
            crate::fake_stripe::SECRET_KEY
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let vars = db_vars(&db);
    let vars = as_refs(&vars);
    let item = |doc: &serde_json::Value, name: &str| {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no item {name} in {doc:#}"))
    };

    // Stripe's account has only an endpoint pointing elsewhere.
    stripe.add_webhook_endpoint("https://old.example.com/webhooks/shop/stripe", "enabled");
    let (code, stdout, _) = run(&["--config", &config, "check", "--json"], &vars).await;
    assert_eq!(code, 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let endpoint = item(&doc, "stripe_webhook_endpoint.shop");
    assert_eq!(endpoint["status"], "fail", "{endpoint}");
    assert!(
        endpoint["detail"]
            .as_str()
            .unwrap()
            .contains("https://api.example.com/webhooks/shop/stripe"),
        "{endpoint}"
    );
    let switches = item(&doc, "jobs_switches");
    assert_eq!(switches["status"], "warn", "{switches}");
    assert!(
        switches["detail"].as_str().unwrap().contains("processing"),
        "{switches}"
    );
    assert_eq!(item(&doc, "rate_limits")["status"], "pass");
    assert_eq!(
        stripe.received("GET /v1/webhook_endpoints").len(),
        1,
        "listed with the app's secret key"
    );

    // The endpoint added in Stripe, the switch back on: every line passes.
    stripe.add_webhook_endpoint("https://api.example.com/webhooks/shop/stripe", "enabled");
    tollgate::jobs::switches::set(&live, tollgate::jobs::switches::Switch::Processing, true)
        .await
        .unwrap();
    let (code, stdout, _) = run(&["--config", &config, "check", "--json"], &vars).await;
    assert_eq!(code, 0, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(item(&doc, "stripe_webhook_endpoint.shop")["status"], "pass");
    assert_eq!(item(&doc, "jobs_switches")["status"], "pass");

    // The same development config judged by production's rules.
    let (code, stdout, _) = run(
        &["--config", &config, "check", "--production", "--json"],
        &vars,
    )
    .await;
    assert_eq!(code, 2, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let configuration = item(&doc, "configuration");
    assert_eq!(configuration["status"], "fail");
    for key in ["encryption_key", "metrics_token"] {
        assert!(
            configuration["detail"].as_str().unwrap().contains(key),
            "{configuration}"
        );
    }
    live.close().await;
}

/// `tollgate … | head` ends the command quietly, as command-line tools end, not with a panic
/// and a backtrace about a broken pipe.
#[tokio::test]
async fn output_cut_short_by_the_reader_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = tollgate(&["config", "example"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE: {:?}",
        out.status
    );
}

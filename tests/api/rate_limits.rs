//! Rate limits: exact headers, per IP behind trusted proxies only, one limit shared by two
//! processes through Redis, and the configured behaviour when Redis is unreachable.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tollgate::config::{FailMode, LimitConfig};

use crate::cli::{as_refs, db_vars, run, tollgate};
use crate::helpers::{TestDb, problem, redis_url, spawn_app_with};

fn limit(requests: u64) -> LimitConfig {
    LimitConfig {
        requests,
        per_seconds: 60,
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn answers_carry_the_remaining_budget_and_a_429_says_when_to_retry() {
    let app = spawn_app_with(|c| c.rate_limits.key = limit(3)).await;
    let key = app.user_key("rl-app", "u1").await;
    for (remaining, t) in [(2, 20), (1, 40), (0, 60)] {
        let r = app
            .client
            .get(app.url("/v1/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy"), "\"key\";q=3;w=60");
        assert_eq!(
            header(&r, "ratelimit"),
            format!("\"key\";r={remaining};t={t}")
        );
        assert_eq!(header(&r, "x-ratelimit-limit"), "3");
        assert_eq!(header(&r, "x-ratelimit-remaining"), remaining.to_string());
        let reset: i64 = header(&r, "x-ratelimit-reset").parse().unwrap();
        assert!(
            (reset - (now_secs() + t)).abs() <= 1,
            "reset is a Unix time {t} s ahead"
        );
    }
    let r = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "retry-after"), "20");
    assert_eq!(header(&r, "ratelimit"), "\"key\";r=0;t=60");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let body = problem(r, 429).await;
    assert_eq!(body["type"], "urn:tollgate:problem:rate-limited");
}

#[tokio::test]
async fn requests_without_a_key_are_limited_per_ip_and_forwarded_for_is_believed_only_from_trusted_proxies()
 {
    let app = spawn_app_with(|c| c.rate_limits.ip = limit(2)).await;
    let get = |xff: &'static str| {
        app.client
            .get(app.url("/v1/me"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(get("203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(get("203.0.113.2").await.unwrap().status(), 401);
    // Not a trusted proxy: the header is ignored, so both were the same client.
    problem(get("203.0.113.3").await.unwrap(), 429).await;
    assert_eq!(
        app.get_health().await.status(),
        200,
        "/health is never limited"
    );

    let trusting = spawn_app_with(|c| {
        c.rate_limits.ip = limit(2);
        // The load balancer talks to us; the client's own edge proxy is in 10/8.
        c.http.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    })
    .await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        for _ in 0..2 {
            let r = trusting
                .client
                .get(trusting.url("/v1/me"))
                .header("x-forwarded-for", format!("{client}, 10.9.9.9"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "each forwarded client has its own budget");
        }
    }
    let r = trusting
        .client
        .get(trusting.url("/v1/me"))
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    let open = spawn_app_with(|c| {
        c.redis.url = Some("redis://127.0.0.1:1".into());
        c.rate_limits.key = limit(1);
    })
    .await;
    let key = open.user_key("rl-app", "u1").await;
    for _ in 0..3 {
        let r = open
            .client
            .get(open.url("/v1/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "fail open: requests pass");
        assert!(r.headers().get("ratelimit").is_none());
    }
    let metrics = open.get_metrics(None).await.text().await.unwrap();
    assert!(
        metrics.contains("tollgate_rate_limit_backend_errors_total"),
        "{metrics}"
    );

    let closed = spawn_app_with(|c| {
        c.redis.url = Some("redis://127.0.0.1:1".into());
        c.rate_limits.on_redis_error = FailMode::Closed;
    })
    .await;
    let key = closed.user_key("rl-app", "u1").await;
    let r = closed
        .client
        .get(closed.url("/v1/me"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "retry-after"), "1");
    problem(r, 503).await;
}

/// Starts `tollgate serve` and returns it with the address it bound.
async fn serve(vars: &[(&str, &str)]) -> (Child, String) {
    let mut child = tollgate(&["serve"], vars)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "tollgate started" || v["message"] == "tollgate started" {
                let a = v["fields"]["address"]
                    .as_str()
                    .or(v["address"].as_str())
                    .unwrap()
                    .to_string();
                return a;
            }
        }
        panic!("the server exited before starting");
    })
    .await
    .expect("the server starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

#[tokio::test]
async fn two_processes_sharing_redis_enforce_one_limit() {
    let test_db = TestDb::new().await;
    let db_vars = db_vars(&test_db);
    let mut vars = as_refs(&db_vars);
    let prefix = format!("tollgate-test:{}:", uuid::Uuid::now_v7().simple());
    let redis = redis_url();
    vars.extend([
        ("TOLLGATE_LISTEN", "127.0.0.1:0"),
        ("TOLLGATE_LOG__FORMAT", "json"),
        ("REDIS_URL", redis.as_str()),
        ("TOLLGATE_RATE_LIMITS__REDIS_PREFIX", prefix.as_str()),
        ("TOLLGATE_RATE_LIMITS__KEY__REQUESTS", "4"),
    ]);
    let (a, url_a) = serve(&vars).await;
    let (b, url_b) = serve(&vars).await;
    run(&["apps", "create", "shared"], &vars).await;
    let (_, out, _) = run(&["keys", "create", "--app", "shared", "--user", "u"], &vars).await;
    let key = out.lines().last().unwrap().to_string();
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let r = client
            .get(format!("{url}/v1/me"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "one budget of 4 across both"
    );
    drop((a, b));
}

#[tokio::test]
async fn a_plan_picks_its_rate_limit_tier_for_its_users_keys() {
    let app = spawn_app_with(|c| {
        c.rate_limits.tiers.insert("free".into(), limit(2));
        c.rate_limits.tiers.insert("pro".into(), limit(5));
        let mut shop = crate::credits::shop_config();
        shop.plans[0].rate_limit_tier = Some("free".into());
        shop.plans[1].rate_limit_tier = Some("pro".into());
        c.apps = vec![shop];
    })
    .await;
    let s = crate::credits::seed(&app, "shop").await;
    let bob = app.user_key("shop", "bob").await;
    let (bob_user, _) = tollgate::store::identity::find_or_create_user(&app.db, s.app_id, "bob")
        .await
        .unwrap();
    let pro = tollgate::store::ledger::UserPlan {
        plan_id: Some("pro".into()),
        billing: None,
        until: None,
    };
    let bob_t = tollgate::store::ledger::Target {
        app_id: s.app_id,
        user_id: bob_user.id,
    };
    tollgate::store::ledger::set_plan(&app.db, bob_t, &pro, None)
        .await
        .unwrap();

    let mut free = Vec::new();
    for _ in 0..3 {
        free.push(app.get_as("/v1/me", &s.user_key).await);
    }
    assert_eq!(
        header(&free[0], "ratelimit-policy"),
        "\"tier:free\";q=2;w=60"
    );
    assert_eq!(
        free.iter().map(|r| r.status().as_u16()).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    for _ in 0..3 {
        let r = app.get_as("/v1/me", &bob).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-policy"), "\"tier:pro\";q=5;w=60");
    }
    // The app's own key is not a user's: it keeps the per-key limit.
    let r = app.get_as("/v1/compat", &s.app_key).await;
    assert_eq!(header(&r, "ratelimit-policy"), "\"key\";q=600;w=60");
}

#[tokio::test]
async fn probes_and_authenticated_scrapes_are_never_limited_by_anonymous_traffic() {
    let app = spawn_app_with(|c| {
        c.rate_limits.ip = limit(5);
        c.metrics_token = Some("m".repeat(32).into());
    })
    .await;
    // Anonymous traffic from this address spends its whole budget.
    let mut limited = 0;
    for _ in 0..10 {
        if app
            .get("/v1/compat?platform=ios&version=1.0.0")
            .await
            .status()
            == 429
        {
            limited += 1;
        }
    }
    assert!(limited >= 5, "the address is limited ({limited})");
    for _ in 0..10 {
        assert_eq!(app.get_health().await.status(), 200);
        assert_eq!(app.get_ready().await.status(), 200);
        let token = "m".repeat(32);
        assert_eq!(app.get_metrics(Some(&token)).await.status(), 200);
    }
    // A scrape without the token is anonymous traffic like any other.
    assert_eq!(app.get_metrics(None).await.status(), 429);
}

#[tokio::test]
async fn ready_reports_a_lost_redis_as_degraded_and_stays_200_when_limits_fail_open() {
    let open = spawn_app_with(|c| c.redis.url = Some("redis://127.0.0.1:1".into())).await;
    let r = open.get_ready().await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "warn", "{body}");
    assert_eq!(body["checks"]["redis"][0]["status"], "warn");
    assert_eq!(body["checks"]["database"][0]["status"], "pass");

    let closed = spawn_app_with(|c| {
        c.redis.url = Some("redis://127.0.0.1:1".into());
        c.rate_limits.on_redis_error = FailMode::Closed;
    })
    .await;
    let r = closed.get_ready().await;
    assert_eq!(
        r.status(),
        503,
        "Redis down with limits failing closed: not ready"
    );
}

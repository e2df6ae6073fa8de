//! The live dashboard on the admin listener (docs/DASHBOARD.md), over real HTTP on loopback:
//! the page and its assets, the SSE stream of snapshots under load with a spill, the admin
//! token's cookie, and a viewer that does not hold up a shutdown.
mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use spillway_gateway::config::Secret;

/// The next snapshot of the stream.
async fn snapshot(sse: &mut Sse) -> Value {
    let data = sse.next().await.expect("the stream goes on");
    serde_json::from_str(&data).unwrap_or_else(|e| panic!("snapshot is not JSON ({e}): {data}"))
}

/// Reads snapshots until one satisfies `want` (bounded by [`DEADLINE`]).
async fn snapshot_where(sse: &mut Sse, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = snapshot(sse).await;
        if want(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot with {what}; last: {s}"
        );
    }
}

fn geography<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["geographies"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no geography {name} in {s}"))
}

fn region<'a>(s: &'a Value, geo: &str, name: &str) -> &'a Value {
    geography(s, geo)["regions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no region {name} in {s}"))
}

fn region_names(s: &Value, geo: &str) -> Vec<String> {
    geography(s, geo)["regions"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Spilled traffic from `from` summed over its flows: (total, rate now).
fn spilled_from(s: &Value, geo: &str, from: &str) -> (u64, f64) {
    let flows = geography(s, geo)["flows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    flows
        .iter()
        .filter(|f| f["from"] == from)
        .fold((0, 0.0), |(t, r), f| {
            (
                t + f["total"].as_u64().unwrap_or(0),
                r + f["per_s"].as_f64().unwrap_or(0.0),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_whole_from_the_binary() {
    let h = Harness::start(Spec::standard()).await;
    let admin = h.gw().admin_addr();
    for (path, kind) in [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = h
            .client
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(resp.status(), 200, "{path}");
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        assert_eq!(header("content-type").as_deref(), Some(kind), "{path}");
        assert_eq!(header("cache-control").as_deref(), Some("no-store"));
        if path == "/dashboard" {
            let csp = header("content-security-policy").expect("a CSP on the page");
            assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
        }
        let text = resp.text().await.expect("body");
        assert!(!text.contains("://"), "{path} names another origin");
        assert!(!text.contains("@import"), "{path} imports a style sheet");
    }
    // The API listeners do not serve it.
    let api = h
        .client
        .get(h.url("us-east-1", "/dashboard"))
        .send()
        .await
        .expect("api answers");
    assert_eq!(api.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_show_the_regions_a_spill_and_change_under_load() {
    let mut spec = Spec::standard().routing("source_queue", "0");
    spec.dep(M, "us-east-1").max_in_flight = 1;
    spec.price(M, "us-east-1", 1.0, 2.0);
    let h = Harness::start(spec).await;
    let admin = h.gw().admin_addr();
    let resp = h
        .client
        .get(format!("http://{admin}/dashboard/events"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut sse = Sse::new(resp);

    // At once on connect: every region of each geography, idle, nothing counted yet.
    let first = snapshot(&mut sse).await;
    assert_eq!(first["version"], 1);
    assert_eq!(region_names(&first, "us"), US);
    assert_eq!(region_names(&first, "eu"), EU);
    assert_eq!(first["totals"]["requests"], 0);
    let east1 = region(&first, "us", "us-east-1");
    assert_eq!(
        (east1["in_flight"].as_u64(), east1["capacity"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(east1["health"], "healthy");
    assert_eq!(region(&first, "us", "us-east-2")["capacity"], 32);

    // Load with a spill: us-east-1's only slot held by a stream, then profile calls from
    // us-east-1 (spilled within us) and plain-id calls (throttled: nowhere else to go).
    let hold = h.hold("us-east-1", M, "us-east-1").await;
    let profile = format!("us.{M}");
    let mut spilled = 0;
    for _ in 0..6 {
        let r = h.chat("us-east-1", body(&profile, 3)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.reason(), Some("spill:capacity"), "{r:?}");
        assert_ne!(r.region(), Some("us-east-1"));
        spilled += 1;
    }
    let (_, s) = h.stream("us-east-1", stream_body(&profile, 3)).await;
    Sse::new(s).rest().await;
    spilled += 1;
    h.chat("us-east-1", body(M, 3)).await.assert_throttled();

    let busy = snapshot_where(&mut sse, "the spill counted and rated", |s| {
        let (total, rate) = spilled_from(s, "us", "us-east-1");
        total >= spilled && rate > 0.0
    })
    .await;
    let east1 = region(&busy, "us", "us-east-1");
    assert_eq!(
        east1["in_flight"], 1,
        "the held stream shows as load: {east1}"
    );
    assert!(east1["spilled_out_per_s"].as_f64() > Some(0.0), "{east1}");
    assert!(east1["throttled_per_s"].as_f64() > Some(0.0), "{east1}");
    assert!(
        east1["cost_usd"].as_f64() > Some(0.0),
        "billed at us-east-1's price: {east1}"
    );
    let totals = &busy["totals"];
    assert!(totals["requests"].as_u64() >= Some(spilled + 1), "{totals}");
    assert!(totals["throttled_capacity"].as_u64() >= Some(1), "{totals}");
    assert!(
        totals["ttft_ms"]["count"].as_u64() >= Some(1),
        "a stream's first byte: {totals}"
    );
    let acme = &busy["tenants"][0];
    assert_eq!(acme["name"], "acme");
    assert!(acme["cost_usd"].as_f64() > Some(0.0), "{acme}");
    // Never a flow out of the geography, nor into eu.
    for f in geography(&busy, "us")["flows"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(US.contains(&f["to"].as_str().unwrap_or("")), "{f}");
    }
    assert!(
        geography(&busy, "eu")["flows"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // Figures change from snapshot to snapshot: the held stream ends, the load goes.
    drop(hold);
    let later = snapshot_where(&mut sse, "us-east-1 idle again", |s| {
        region(s, "us", "us-east-1")["in_flight"] == 0
    })
    .await;
    assert_ne!(later["totals"]["requests"], first["totals"]["requests"]);
    assert_ne!(later["unix_ms"], first["unix_ms"]);
    h.assert_residency();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_a_browser_gets_a_dashboard_only_cookie() {
    const TOKEN: &str = "admin-token-for-the-test";
    let h = Harness::start_custom(
        Spec::standard(),
        "",
        |cfg| cfg.admin.token = Some(Secret(TOKEN.to_string())),
        "http",
        reqwest::Client::new(),
    )
    .await;
    let admin = h.gw().admin_addr();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: &str, cookie: Option<&str>| {
        let mut req = no_redirects.get(format!("http://{admin}{path}"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };

    for path in [
        "/dashboard",
        "/dashboard/events",
        "/dashboard/app.js",
        "/dashboard?token=wrong",
    ] {
        let resp = get(path, None).await.expect("admin answers");
        assert_eq!(resp.status(), 401, "{path}");
        let text = resp.text().await.expect("body");
        assert!(!text.contains(TOKEN), "{path}: the token in an error body");
    }

    let resp = get(&format!("/dashboard?token={TOKEN}"), None)
        .await
        .expect("admin answers");
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/dashboard"),
        "the token leaves the address bar"
    );
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN),
        "the cookie does not carry the token: {set}"
    );
    let cookie = set.split(';').next().expect("name=value").to_string();

    let page = get("/dashboard", Some(&cookie)).await.expect("page");
    assert_eq!(page.status(), 200);
    let events = get("/dashboard/events", Some(&cookie))
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    let mut sse = Sse::new(events);
    assert_eq!(region_names(&snapshot(&mut sse).await, "us"), US);

    // The cookie opens the dashboard only; a forged one opens nothing.
    let metrics = get("/metrics", Some(&cookie)).await.expect("metrics");
    assert_eq!(metrics.status(), 401);
    for path in ["/metrics", "/admin/reload"] {
        assert_eq!(
            get(path, None).await.expect("admin").status(),
            401,
            "{path}"
        );
    }
    // The probes stay open: an orchestrator's HTTP probe cannot send a secret.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            get(path, None).await.expect("admin").status(),
            200,
            "{path}"
        );
    }
    let forged = get("/dashboard", Some("spillway_dashboard=00ff"))
        .await
        .expect("page");
    assert_eq!(forged.status(), 401);
    // The bearer token works as on every admin route.
    let one = no_redirects
        .get(format!("http://{admin}/dashboard/snapshot"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(one.status(), 200);
    let s: Value = one.json().await.expect("json");
    assert_eq!(region_names(&s, "eu"), EU);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_does_not_hold_up_a_shutdown() {
    let mut h = Harness::start(Spec::standard()).await;
    let admin = h.gw().admin_addr();
    let resp = h
        .client
        .get(format!("http://{admin}/dashboard/events"))
        .send()
        .await
        .expect("admin answers");
    let mut sse = Sse::new(resp);
    snapshot(&mut sse).await;
    let started = Instant::now();
    let clean = h.take_gateway().shutdown(Duration::from_secs(30)).await;
    assert!(clean, "shut down within the grace");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the viewer's stream ended with the gateway ({:?})",
        started.elapsed()
    );
    // Its stream ends rather than hanging.
    while sse.next().await.is_some() {}
}

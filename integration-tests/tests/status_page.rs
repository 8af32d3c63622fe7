//! The coordinator's live status page, loaded in headless Chromium (the
//! Debian package; `.ci/run` installs it): it shows the cluster, and its
//! numbers and charts move under load.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tandem_client::Outcome;
use tandem_integration_tests::cluster::Target;
use tandem_integration_tests::{Cluster, ClusterConfig};

/// The page's DOM after its script ran (Chromium's `--dump-dom`, with
/// virtual time so the first polls have answered).
async fn render(addr: SocketAddr) -> String {
    let url = format!("http://{addr}/");
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let output = tokio::task::spawn_blocking(move || {
        // `timeout` kills a browser that hangs.
        std::process::Command::new("timeout")
            .args([
                "-k",
                "5",
                "60",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args([
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=3000",
            ])
            .arg(profile_arg)
            .args(["--dump-dom", &url])
            .output()
            .expect("run chromium (apt-get install chromium; .ci/run installs it)")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// The text of the element with id `id` (one without children).
fn text(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap();
    rest[start..start + end].to_owned()
}

fn number(dom: &str, id: &str) -> f64 {
    let value = text(dom, id);
    value
        .trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is {value:?}, not a number"))
}

/// Attribute `name` of the element with id `id`.
fn attribute(dom: &str, id: &str, name: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap();
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let key = format!("{name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("no {name} on #{id}: {tag}")) + key.len();
    tag[start..start + tag[start..].find('"').unwrap()].to_owned()
}

/// The participants table's row of `name`.
fn row(dom: &str, name: &str) -> String {
    let at = dom
        .find(&format!("data-participant=\"{name}\""))
        .unwrap_or_else(|| panic!("no row for {name}"));
    dom[at..at + dom[at..].find("</tr>").unwrap()].to_owned()
}

#[tokio::test]
async fn the_status_page_shows_the_cluster_and_its_numbers_move_under_load() {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let mut client = cluster.client().await.expect("client connects");
    seed_accounts(&mut client, &["alpha", "beta"], 2, 1_000).await;
    let addr = cluster.admin_addr(&Target::Coordinator(0)).unwrap();

    let before = render(addr).await;
    assert_eq!(text(&before, "replica"), "tc");
    assert_eq!(text(&before, "state"), "serving");
    assert_eq!(text(&before, "version"), env!("CARGO_PKG_VERSION"));
    for name in ["alpha", "beta"] {
        let row = row(&before, name);
        assert!(row.contains(">up<"), "{row}");
    }
    assert_eq!(number(&before, "in-doubt"), 0.0);
    assert_eq!(number(&before, "hazards"), 0.0);
    let committed = number(&before, "committed-total");
    let aborted = number(&before, "aborted-total");

    // Load: committed transfers, and some whose guard fails.
    let mut ids = Vec::new();
    for i in 0..40 {
        let to = if i % 8 == 7 { 99 } else { 1 };
        let done = client
            .submit(vec![("alpha", vec![debit(1, 1)]), ("beta", vec![credit(to, 1)])])
            .await
            .unwrap();
        let expected = if to == 99 { Outcome::Aborted } else { Outcome::Committed };
        assert_eq!(done.outcome(), expected, "{}", done.reason);
        ids.push(done.txn_id);
    }

    // The sampler takes a point a second: look until the load shows.
    let until = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let dom = render(addr).await;
        if number(&dom, "committed-total") >= committed + 35.0
            && attribute(&dom, "throughput-chart", "data-peak").parse::<f64>().unwrap() > 0.0
        {
            break dom;
        }
        assert!(Instant::now() < until, "the page did not move: {dom}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(number(&after, "committed-total"), committed + 35.0);
    assert_eq!(number(&after, "aborted-total"), aborted + 5.0);
    assert!(number(&after, "p50") > 0.0, "p50 {}", text(&after, "p50"));
    assert!(number(&after, "p99") >= number(&after, "p50"));
    assert!(
        attribute(&after, "latency-chart", "data-peak").parse::<f64>().unwrap() > 0.0,
        "latency charted"
    );
    assert!(
        attribute(&after, "throughput-chart", "data-points")
            .parse::<u32>()
            .unwrap()
            >= 1
    );

    // The page's data holds counts, never a transaction's id.
    let (status, json) = tandem_integration_tests::http::get(addr, "/status.json").await.unwrap();
    assert_eq!(status, 200);
    assert!(json.contains("\"replica\":\"tc\""), "{json}");
    for id in &ids {
        assert!(!json.contains(id.as_str()), "{id} in {json}");
    }
}

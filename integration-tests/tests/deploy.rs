//! The deployment files: Kubernetes manifests checked offline against the
//! API's schemas (`kubernetes-validate`, from PyPI; `.ci/run` installs
//! it). The Grafana dashboard is checked against a live scrape in
//! `operations.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("deploy/k8s")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .expect("run kubernetes-validate (pip install kubernetes-validate; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("ERROR") && !text.contains("WARN"), "{text}");
    // Every resource was checked, not skipped.
    let sources: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read"))
        .collect();
    let resources: usize = sources
        .iter()
        .map(|s| s.lines().filter(|l| l.starts_with("kind:")).count())
        .sum();
    assert_eq!(text.matches("passed for resource").count(), resources, "{text}");
    // What the trust model needs: a default deny, a policy per component,
    // the coordinator's disruption budget.
    let all = sources.join("\n");
    for kind in [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
    ] {
        assert!(all.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    assert!(all.contains("name: default-deny"), "no default deny");
}

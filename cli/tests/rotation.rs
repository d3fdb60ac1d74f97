//! `toolmesh certs rotate` under a running `toolmesh registry` process: the registry takes the
//! new certificate from its files without a restart while callers keep calling, and nobody
//! notices but a new connection, which is shown the new certificate.

mod common;

use common::{run, toolmesh, wait_until, Certs, RegistryProcess};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toolmesh_core::registry_client::RegistryClient;
use toolmesh_core::tls::{Identity, TlsFiles};

/// The first certificate in `text` (PEM), without surrounding text.
fn first_pem(text: &str) -> Option<String> {
    let begin = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[begin..].find("-----END CERTIFICATE-----")? + begin + "-----END CERTIFICATE-----".len();
    Some(text[begin..end].to_owned())
}

/// The certificate the registry presents on a new connection, as `openssl s_client` (acting
/// as the operator of the certificates in `dir`) sees it.
async fn presented(url: &str, dir: PathBuf) -> String {
    let address = url.trim_start_matches("https://").to_owned();
    tokio::task::spawn_blocking(move || {
        let file = |name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
        let output = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-connect", &address, "-CAfile", &file("ca.pem")])
            .args(["-cert", &file("operator.pem"), "-key", &file("operator.key")])
            .stdin(Stdio::null())
            .output()
            .expect("run openssl s_client");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        first_pem(&text).unwrap_or_else(|| panic!("no certificate presented: {text}{}", String::from_utf8_lossy(&output.stderr)))
    })
    .await
    .expect("s_client")
}

/// `openssl x509 -serial -enddate` of a PEM certificate.
fn serial_and_end(pem: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-enddate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    child.stdin.take().expect("stdin").write_all(pem.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("openssl x509");
    assert!(output.status.success(), "openssl x509 failed on {pem}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_rotate_under_a_registry_process_fails_no_call_and_new_connections_see_the_new_certificate() {
    assert!(Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()), "install openssl (apt-get install openssl)");
    let certs = Certs::init("calc");
    let registry = RegistryProcess::start(&certs, &[]);
    let (url, dir) = (registry.url.clone(), certs.dir.path().to_owned());
    let file_pem = || first_pem(&std::fs::read_to_string(dir.join("registry.pem")).expect("registry.pem")).expect("a certificate");
    let before = presented(&url, dir.clone()).await;
    assert_eq!(before, file_pem(), "the registry presents its certificate file");

    // Callers: a client that keeps its connection, one that opens new ones every round, and an
    // operator running `toolmesh list` processes.
    let files = TlsFiles { cert: dir.join("operator.pem"), key: dir.join("operator.key"), ca: dir.join("ca.pem") };
    let operator = Identity::load(&files).expect("operator identity");
    let (ok, failed, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    let mut callers = Vec::new();
    for fresh in [false, true] {
        let (ok, failed, stop, url, operator) = (ok.clone(), failed.clone(), stop.clone(), url.clone(), operator.clone());
        callers.push(tokio::spawn(async move {
            let kept = RegistryClient::new(&url, &operator).expect("client");
            while !stop.load(Ordering::Relaxed) {
                let client = if fresh { RegistryClient::new(&url, &operator).expect("client") } else { kept.clone() };
                match client.list_agents().await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("list failed during the rotation: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let cli_runs = Arc::new(AtomicUsize::new(0));
    let cli = std::thread::spawn({
        let (stop, url, args, cli_runs) = (stop.clone(), url.clone(), certs.tls_args("operator"), cli_runs.clone());
        move || {
            let mut runs = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                runs.push(run(toolmesh(&["list", "--registry", &url]).args(&args)));
                cli_runs.fetch_add(1, Ordering::Relaxed);
            }
            runs
        }
    });
    let load = || (ok.load(Ordering::Relaxed), cli_runs.load(Ordering::Relaxed));
    wait_until("25 calls and a toolmesh list run before the rotation", Duration::from_secs(20), || {
        let (calls, runs) = load();
        calls >= 25 && runs >= 1
    })
    .await;

    let dir_arg = dir.to_str().expect("utf-8").to_owned();
    let rotated = tokio::task::spawn_blocking(move || run(toolmesh(&["certs", "rotate", "registry", "--dir", &dir_arg])).success())
        .await
        .expect("rotate");
    assert!(rotated.stdout.contains("rotated"), "{}", rotated.stdout);
    let new = file_pem();
    assert_ne!(new, before);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = presented(&url, dir.clone()).await;
    while after != new {
        assert_eq!(after, before, "neither the old nor the new certificate was presented");
        assert!(Instant::now() < deadline, "the registry still presents the old certificate 5 s after the rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = presented(&url, dir.clone()).await;
    }
    assert_ne!(serial_and_end(&after), serial_and_end(&before), "a new serial");
    let (calls_at_rotation, runs_at_rotation) = load();
    wait_until("26 calls and 2 toolmesh list runs after the rotation", Duration::from_secs(20), || {
        let (calls, runs) = load();
        calls > calls_at_rotation + 25 && runs >= runs_at_rotation + 2
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    let runs = cli.join().expect("cli loop");
    let cli_failures: Vec<String> = runs.iter().filter(|r| r.code != Some(0)).map(|r| r.stderr.clone()).collect();
    assert!(cli_failures.is_empty(), "toolmesh list failed during the rotation: {cli_failures:?}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "calls failed across the rotation");
    assert!(
        ok.load(Ordering::Relaxed) > 50 && runs.len() >= 3,
        "too little load to prove anything: {} calls, {} list runs",
        ok.load(Ordering::Relaxed),
        runs.len()
    );
    eprintln!("across the rotation: {} registry calls and {} toolmesh list runs, none failed", ok.load(Ordering::Relaxed), runs.len());
    let (code, logs) = registry.terminate();
    assert_eq!(code, Some(0), "{logs}");
}

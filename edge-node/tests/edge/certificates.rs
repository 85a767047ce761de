//! Certificates from files, reloaded when they change (a broken new pair keeps the old one).

use crate::support::{TestEdge, TestOrigin};

fn identity() -> (String, String, Vec<u8>) {
    test_support::certs::self_signed(&["localhost"])
}

async fn served_certificate(edge: &TestEdge, roots: &[&[u8]]) -> Vec<u8> {
    let mut builder = reqwest::Client::builder()
        .tls_info(true)
        .resolve("localhost", edge.addresses.tls.unwrap());
    for root in roots {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(root).unwrap());
    }
    let client = builder.build().unwrap();
    let response = client.get(edge.https("/public/none")).send().await.unwrap();
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_when_their_files_change() {
    let origin = TestOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (first_cert, first_key, first_der) = identity();
    std::fs::write(&cert_path, first_cert).unwrap();
    std::fs::write(&key_path, first_key).unwrap();
    let mut config = crate::support::edge_config(vec![origin.url()]);
    config.tls_cert = Some(cert_path.clone());
    config.tls_key = Some(key_path.clone());
    config.tls_reload_interval_ms = 50;
    let edge = TestEdge::start_with(config).await;
    let (second_cert, second_key, second_der) = identity();
    let roots = [first_der.as_slice(), second_der.as_slice()];
    assert_eq!(served_certificate(&edge, &roots).await, first_der);

    // A broken pair is refused and the old certificate stays in service.
    let refused_before = edge
        .metric(
            "cadenza_edge_certificate_reloads_total",
            r#"outcome="refused""#,
        )
        .await;
    std::fs::write(&cert_path, "not a certificate").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while edge
        .metric(
            "cadenza_edge_certificate_reloads_total",
            r#"outcome="refused""#,
        )
        .await
        <= refused_before
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never looked at the broken pair"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served_certificate(&edge, &roots).await, first_der);

    // A new pair, written key first and renamed into place, is served to new connections.
    std::fs::write(&key_path, second_key).unwrap();
    let staged = dir.path().join("cert.pem.new");
    std::fs::write(&staged, second_cert).unwrap();
    std::fs::rename(&staged, &cert_path).unwrap();
    let mut served = Vec::new();
    for _ in 0..200 {
        served = served_certificate(&edge, &roots).await;
        if served == second_der {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(served, second_der);
}

//! Fills over mutual TLS: an origin that takes no fill key, only client certificates issued by
//! its fill CA, and an edge that fills from it with such a certificate.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use telemetry::DaemonConfig as _;
use telemetry::{Secret, Shutdown};

/// A CA, and PEM files of certificates it issues.
struct Authority(CertifiedIssuer<'static, KeyPair>);

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// Writes `{stem}.pem` and `{stem}.key` for a certificate with these names and purpose.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str], purpose: ExtendedKeyUsagePurpose) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.extended_key_usages = vec![purpose];
        let certificate = params.signed_by(&key, &self.0).unwrap();
        std::fs::write(dir.join(format!("{stem}.pem")), certificate.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, self.0.pem()).unwrap();
    }
}

fn client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder().add_root_certificate(ca);
    if let Some(stem) = identity {
        let mut pem = std::fs::read(dir.join(format!("{stem}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{stem}.key"))).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_fills_over_mutual_tls_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path();
    let authority = Authority::new("Cadenza fill CA");
    authority.write(&pki.join("ca.pem"));
    authority.issue(
        pki,
        "origin",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    authority.issue(
        pki,
        "edge",
        &["edge-1"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue = Authority::new("Somebody else");
    rogue.issue(
        pki,
        "rogue",
        &["edge-1"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );

    let objects = pki.join("objects");
    let segment: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::create_dir_all(objects.join("media/t1/v1")).unwrap();
    std::fs::write(objects.join("media/t1/v1/seg-1.m4s"), &segment).unwrap();

    // The origin: TLS, a client certificate from the fill CA required, no fill key at all.
    let config = origin::Config {
        object_store_url: format!("file://{}", objects.display()),
        fill_key: None,
        tls_cert: Some(pki.join("origin.pem")),
        tls_key: Some(pki.join("origin.key")),
        fill_client_ca: Some(pki.join("ca.pem")),
        ..origin::Config::default()
    };
    config.validate().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_url = format!("https://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(origin::run(
        origin::Origin::new(config).unwrap(),
        listener,
        admin,
        shutdown.clone(),
    ));
    let segment_url = format!("{origin_url}/media/t1/v1/seg-1.m4s");

    // The fill CA's client certificate fills, without a key.
    let response = client(pki, Some("edge"))
        .get(&segment_url)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), segment);
    // No certificate, or one from another CA: the handshake fails, even with a key.
    for identity in [None, Some("rogue")] {
        let refused = client(pki, identity)
            .get(&segment_url)
            .bearer_auth("a-key-the-origin-does-not-take")
            .send()
            .await;
        assert!(refused.is_err(), "{identity:?} was let in");
    }

    // An edge with the certificate fills from it and serves the bytes.
    let edge_config = edge_node::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: None,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        parents: vec![origin_url.clone()],
        fill_key: Some(Secret::new("the-edges-own-key-for-children")),
        parent_ca: Some(pki.join("ca.pem")),
        fill_client_cert: Some(pki.join("edge.pem")),
        fill_client_key: Some(pki.join("edge.key")),
        token_prefixes: Vec::new(),
        ..edge_node::Config::default()
    };
    edge_config.validate().unwrap();
    let listeners = edge_node::Listeners::bind(&edge_config).await.unwrap();
    let engine = edge_node::Engine::new(edge_config, Arc::new(edge_node::EdgeHooks)).unwrap();
    let (addresses, _task) = edge_node::start(engine, listeners, shutdown.clone()).unwrap();
    let edge_url = format!(
        "http://{}/media/t1/v1/seg-1.m4s",
        addresses.cleartext.unwrap()
    );
    let plain = reqwest::Client::new();
    for expected in ["miss", "hit"] {
        let response = plain.get(&edge_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(status.contains(expected), "{status}");
        assert_eq!(response.bytes().await.unwrap(), segment);
    }

    // The same edge without its certificate cannot fill a new object.
    std::fs::write(objects.join("media/t1/v1/seg-2.m4s"), &segment).unwrap();
    let without = edge_node::Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: None,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        parents: vec![origin_url],
        fill_key: Some(Secret::new("the-edges-own-key-for-children")),
        parent_ca: Some(pki.join("ca.pem")),
        token_prefixes: Vec::new(),
        upstream_connect_timeout_ms: 1_000,
        ..edge_node::Config::default()
    };
    let listeners = edge_node::Listeners::bind(&without).await.unwrap();
    let engine = edge_node::Engine::new(without, Arc::new(edge_node::EdgeHooks)).unwrap();
    let (addresses, _task) = edge_node::start(engine, listeners, shutdown.clone()).unwrap();
    let response = plain
        .get(format!(
            "http://{}/media/t1/v1/seg-2.m4s",
            addresses.cleartext.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_server_error(), "{}", response.status());
    shutdown.trigger();
}

//! Self-signed certificates for test servers.

/// A self-signed certificate for `names`: its PEM, its key's PEM, and its DER (what a client
/// trusts).
pub fn self_signed(names: &[&str]) -> (String, String, Vec<u8>) {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().to_vec(),
    )
}

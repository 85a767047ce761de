//! The web player: the single-page app (`web/`, TypeScript built with npm by `build.rs`)
//! embedded in the binary. This module finds a file and says how to send it; `http.rs` serves
//! `index.html` at `/` (revalidated on every load: it names the other files by content hash)
//! and the rest under `/assets/` (immutable for a year), each in gzip where the client takes
//! it.

mod http;

pub(crate) use http::routes;

/// An embedded file as `build.rs` lists it: name, bytes, gzip copy.
type Entry = (&'static str, &'static [u8], Option<&'static [u8]>);

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// One embedded file of the web player.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its bytes.
    pub bytes: &'static [u8],
    /// A gzip copy, for text files.
    pub gzip: Option<&'static [u8]>,
    /// Its media type.
    pub mime: &'static str,
    /// A strong validator of its bytes.
    pub etag: u64,
}

/// The embedded file `name` (`index.html`, `app-….js`, …).
pub fn asset(name: &str) -> Option<Asset> {
    let (_, bytes, gzip) = ASSETS.iter().find(|(file, _, _)| *file == name)?;
    Some(Asset {
        bytes,
        gzip: *gzip,
        mime: mime(name),
        etag: fnv1a(bytes),
    })
}

/// Whether an `Accept-Encoding` value takes gzip (listed, or `*`, without `q=0`).
pub fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let refused = parts.any(|param| {
            param
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// FNV-1a over the bytes: a validator that changes with the file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_unless_refused() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
    }

    #[test]
    fn every_file_index_html_names_is_built_in() {
        let index = asset("index.html").expect("index.html is embedded");
        assert_eq!(index.mime, "text/html; charset=utf-8");
        let text = std::str::from_utf8(index.bytes).unwrap();
        for reference in text.split("\"/assets/").skip(1) {
            let name = reference.split('"').next().unwrap();
            let file = asset(name).unwrap_or_else(|| panic!("{name} is named but not embedded"));
            assert!(file.gzip.is_some(), "{name} has no gzip copy");
        }
    }
}

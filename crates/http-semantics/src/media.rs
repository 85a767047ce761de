//! Media types by file extension, for the files a packaged track is made of and the few
//! others a CDN commonly serves.

/// The `Content-Type` for a path, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        // CMAF media segments (RFC 8216 and ISO/IEC 23000-19 name this type for them).
        Some("m4s") => "video/iso.segment",
        Some("mp4" | "m4a" | "cmfa") => "audio/mp4",
        Some("aac") => "audio/aac",
        Some("mp3") => "audio/mpeg",
        Some("flac") => "audio/flac",
        Some("ogg" | "opus") => "audio/ogg",
        Some("wav") => "audio/wav",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("vtt") => "text/vtt",
        _ => "application/octet-stream",
    }
}

/// Whether a response of this type is worth compressing (text: playlists and manifests).
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/vnd.apple.mpegurl"
                | "application/dash+xml"
                | "application/json"
                | "application/xml"
                | "image/svg+xml"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_formats_have_their_registered_types() {
        assert_eq!(
            content_type("/media/a/1/master.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(
            content_type("/media/a/1/manifest.MPD"),
            "application/dash+xml"
        );
        assert_eq!(
            content_type("/media/a/1/128k/seg-1.m4s"),
            "video/iso.segment"
        );
        assert_eq!(content_type("/media/a/1/128k/init.mp4"), "audio/mp4");
        assert_eq!(content_type("/media/a/1/noext"), "application/octet-stream");
        assert_eq!(content_type("/media/a.b/file"), "application/octet-stream");
        assert!(compressible("application/vnd.apple.mpegurl"));
        assert!(compressible("text/plain; charset=utf-8"));
        assert!(!compressible("video/iso.segment"));
    }
}

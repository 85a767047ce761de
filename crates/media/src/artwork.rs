//! Cover art: the embedded picture decoded (JPEG or PNG, within size limits so that a
//! hostile header cannot claim gigabytes), cropped to a square and scaled to each thumbnail
//! size, encoded as JPEG. A picture that cannot be used is skipped, never a rejection.

use std::io::Cursor;

use image::imageops::FilterType;

/// Thumbnail edge lengths, pixels.
pub const SIZES: [u32; 3] = [96, 300, 640];
/// The largest picture decoded, per side.
pub const MAX_SIDE: u32 = 8_000;
/// The most memory decoding may take.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Why a picture was not used.
#[derive(Debug, thiserror::Error)]
pub enum ArtworkError {
    /// Not a picture this build reads, corrupt, or beyond the limits.
    #[error("cover art not usable: {0}")]
    Image(#[from] image::ImageError),
    /// An I/O error while reading the bytes (they are in memory: only format guessing).
    #[error("cover art not usable: {0}")]
    Io(#[from] std::io::Error),
}

/// Square JPEG thumbnails of `picture`, one per size in [`SIZES`], smallest first.
pub fn thumbnails(picture: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, ArtworkError> {
    let mut reader = image::ImageReader::new(Cursor::new(picture)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode()?;
    let mut out = Vec::with_capacity(SIZES.len());
    for size in SIZES {
        let square = image
            .resize_to_fill(size, size, FilterType::CatmullRom)
            .into_rgb8();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85).encode_image(&square)?;
        out.push((size, jpeg));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn thumbnails_are_square_jpegs_of_each_size() {
        let thumbnails = thumbnails(&png(900, 600)).unwrap();
        assert_eq!(thumbnails.len(), 3);
        for (size, jpeg) in thumbnails {
            let decoded = image::load_from_memory(&jpeg).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (size, size));
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        }
    }

    #[test]
    fn huge_or_broken_pictures_are_refused_without_allocating() {
        // A PNG header claiming 100 000 × 100 000 pixels.
        let mut bytes = png(4, 4);
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(thumbnails(&bytes).is_err());
        assert!(thumbnails(b"not a picture").is_err());
        assert!(thumbnails(&png(4, 4)[..30]).is_err());
    }
}

//! Container integrity that decoding alone does not reveal. A decoder resynchronises past
//! damage and stops quietly at a cut, so half an Ogg file decodes as a whole shorter track;
//! these checks read the container's own evidence (page checksums, end-of-stream flags, box
//! structure) and reject with `corrupt` and where.
//!
//! The rules per format (the decoder-side ones live in `analyze::decode`):
//! - **Ogg** (Vorbis, Opus): pages follow each other from the first byte to the last, each
//!   passes its CRC-32, the file ends at the end of a page (no torn page), and every logical
//!   stream ends with a page flagged end-of-stream.
//! - **MP4/M4A**: a file that starts with an `ftyp` box but has no `moov` box (cut before
//!   the movie box of a moov-at-end file) is corrupt, not "not audio"; a sample table that
//!   points past the data is found while decoding (it ends early).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use symphonia::core::checksum::Crc32;
use symphonia::core::io::Monitor as _;

use super::analyze::Rejection;

/// Ogg's capture pattern.
const OGG_MAGIC: &[u8; 4] = b"OggS";
/// The header-type flag of a stream's last page.
const END_OF_STREAM: u8 = 0x04;

/// What the first bytes of a file say it is, for the checks that need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// An Ogg bitstream.
    Ogg,
    /// An ISO base media file (MP4, M4A).
    Mp4,
    /// Anything else.
    Other,
}

/// Sniffs the container from the first bytes (the reader is left at the start).
pub fn sniff<R: Read + Seek>(source: &mut R) -> std::io::Result<Container> {
    let mut head = [0u8; 12];
    let read = read_up_to(source, &mut head)?;
    source.seek(SeekFrom::Start(0))?;
    Ok(if read >= 4 && &head[..4] == OGG_MAGIC {
        Container::Ogg
    } else if read >= 8 && &head[4..8] == b"ftyp" {
        Container::Mp4
    } else {
        Container::Other
    })
}

/// Checks every page of an Ogg file (see the module's rules); the reader is left at the start.
pub fn check_ogg<R: Read + Seek>(source: &mut R) -> Result<(), Rejection> {
    let io = |error: std::io::Error| Rejection::Corrupt(format!("unreadable ({error})"));
    source.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut offset = 0u64;
    let mut pages = 0u64;
    // Per logical stream (serial number): whether its last page so far was end-of-stream.
    let mut ended: HashMap<u32, bool> = HashMap::new();
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; 27];
        let read = read_up_to(source, &mut header).map_err(io)?;
        if read == 0 {
            break;
        }
        if read < header.len() {
            return Err(torn(offset));
        }
        if &header[..4] != OGG_MAGIC || header[4] != 0 {
            return Err(Rejection::Corrupt(format!(
                "damaged: no Ogg page where one should start, at byte {offset}"
            )));
        }
        let flags = header[5];
        let serial = u32::from_le_bytes([header[14], header[15], header[16], header[17]]);
        let stored_crc = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
        let segments = usize::from(header[26]);
        let mut table = vec![0u8; segments];
        if read_up_to(source, &mut table).map_err(io)? < segments {
            return Err(torn(offset));
        }
        let body_len: usize = table.iter().map(|&len| usize::from(len)).sum();
        body.resize(body_len, 0);
        if read_up_to(source, &mut body).map_err(io)? < body_len {
            return Err(torn(offset));
        }
        header[22..26].fill(0);
        let mut crc = Crc32::new(0);
        crc.process_buf_bytes(&header);
        crc.process_buf_bytes(&table);
        crc.process_buf_bytes(&body);
        if crc.crc() != stored_crc {
            return Err(Rejection::Corrupt(format!(
                "damaged: Ogg page {pages} (at byte {offset}) fails its checksum"
            )));
        }
        ended.insert(serial, flags & END_OF_STREAM != 0);
        pages += 1;
        offset += (header.len() + segments + body_len) as u64;
    }
    if pages == 0 {
        return Err(Rejection::Corrupt("an empty Ogg file".to_owned()));
    }
    if ended.values().any(|ended| !ended) {
        return Err(Rejection::Corrupt(format!(
            "truncated: the Ogg stream stops after {pages} pages ({offset} bytes) without its end-of-stream page"
        )));
    }
    source.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}

fn torn(offset: u64) -> Rejection {
    Rejection::Corrupt(format!(
        "truncated: the Ogg page at byte {offset} is cut off"
    ))
}

/// Reads until `buffer` is full or the source ends; how much was read.
fn read_up_to<R: Read>(source: &mut R, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An Ogg page with a correct CRC.
    fn page(serial: u32, sequence: u32, flags: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 255);
        let mut page = Vec::new();
        page.extend_from_slice(OGG_MAGIC);
        page.push(0);
        page.push(flags);
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(1);
        page.push(body.len() as u8);
        page.extend_from_slice(body);
        let mut crc = Crc32::new(0);
        crc.process_buf_bytes(&page);
        page[22..26].copy_from_slice(&crc.crc().to_le_bytes());
        page
    }

    fn check(bytes: Vec<u8>) -> Result<(), Rejection> {
        check_ogg(&mut Cursor::new(bytes))
    }

    #[test]
    fn whole_streams_pass_and_cut_torn_or_flipped_ones_do_not() {
        let whole = [
            page(7, 0, 0x02, b"head"),
            page(7, 1, 0, b"audio"),
            page(7, 2, END_OF_STREAM, b"end"),
        ]
        .concat();
        assert_eq!(check(whole.clone()), Ok(()));
        // Cut at a page boundary: no end-of-stream page.
        let cut = [page(7, 0, 0x02, b"head"), page(7, 1, 0, b"audio")].concat();
        assert!(
            matches!(check(cut), Err(Rejection::Corrupt(message)) if message.contains("end-of-stream"))
        );
        // Cut inside a page.
        for at in [whole.len() - 1, whole.len() - 10, 30] {
            assert!(
                matches!(check(whole[..at].to_vec()), Err(Rejection::Corrupt(message)) if message.contains("truncated")),
                "{at}"
            );
        }
        // One bit flipped in a body.
        let mut flipped = whole.clone();
        flipped[30] ^= 0x10;
        assert!(
            matches!(check(flipped), Err(Rejection::Corrupt(message)) if message.contains("checksum"))
        );
        // Garbage after the last page.
        let mut trailing = whole;
        trailing.extend_from_slice(b"xyz");
        assert!(check(trailing).is_err());
        assert!(check(Vec::new()).is_err());
    }

    #[test]
    fn sniffs_containers() {
        let mut ogg = Cursor::new(page(1, 0, 0, b"x"));
        assert_eq!(sniff(&mut ogg).unwrap(), Container::Ogg);
        let mut mp4 = Cursor::new(b"\0\0\0\x20ftypM4A \0\0\0\0".to_vec());
        assert_eq!(sniff(&mut mp4).unwrap(), Container::Mp4);
        let mut other = Cursor::new(b"ID3".to_vec());
        assert_eq!(sniff(&mut other).unwrap(), Container::Other);
    }
}

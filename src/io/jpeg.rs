//! Truncation check for JPEG files. The JPEG decoder fills a scan cut short with grey and
//! returns no error, so a truncated file would be scored as a real image; this walks the
//! marker segments (skipping each segment by its length, so an EXIF thumbnail's own
//! end-of-image marker does not count) and the entropy-coded scans up to the end-of-image
//! marker (EOI). Bytes after EOI (camera trailers, motion-photo video) are ignored.

use std::io::{self, BufRead};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

/// Whether the JPEG stream read from `r` reaches its EOI marker.
pub fn reaches_eoi(mut r: impl BufRead) -> io::Result<bool> {
    let Some(m) = marker(&mut r)? else {
        return Ok(false);
    };
    if m != SOI {
        return Ok(false);
    }
    let mut next = marker(&mut r)?;
    while let Some(m) = next {
        next = match m {
            EOI => return Ok(true),
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 | SOI => marker(&mut r)?,
            _ => {
                if !skip_segment(&mut r)? {
                    return Ok(false);
                }
                if m == SOS {
                    scan(&mut r)?
                } else {
                    marker(&mut r)?
                }
            }
        };
    }
    Ok(false)
}

/// The next marker code: skips bytes up to a 0xFF, then fill bytes (0xFF); `None` at EOF.
fn marker(r: &mut impl BufRead) -> io::Result<Option<u8>> {
    let mut seen_ff = false;
    loop {
        let Some(b) = byte(r)? else {
            return Ok(None);
        };
        match (seen_ff, b) {
            (_, 0xFF) => seen_ff = true,
            (true, 0x00) => seen_ff = false,
            (true, m) => return Ok(Some(m)),
            (false, _) => {}
        }
    }
}

/// Skips a segment after its marker by its 2-byte length; false at EOF.
fn skip_segment(r: &mut impl BufRead) -> io::Result<bool> {
    let (Some(hi), Some(lo)) = (byte(r)?, byte(r)?) else {
        return Ok(false);
    };
    let mut left = (u16::from_be_bytes([hi, lo]) as usize).saturating_sub(2);
    while left > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let n = buf.len().min(left);
        r.consume(n);
        left -= n;
    }
    Ok(true)
}

/// Skips entropy-coded data (where 0xFF is followed by a stuffed 0x00 or a restart
/// marker) and returns the marker that ends it; `None` at EOF.
fn scan(r: &mut impl BufRead) -> io::Result<Option<u8>> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|&b| b == 0xFF) {
            None => {
                let n = buf.len();
                r.consume(n);
            }
            Some(i) => {
                r.consume(i + 1);
                let mut code = byte(r)?;
                while code == Some(0xFF) {
                    code = byte(r)?;
                }
                match code {
                    None => return Ok(None),
                    Some(0x00 | 0xD0..=0xD7) => {}
                    Some(m) => return Ok(Some(m)),
                }
            }
        }
    }
}

fn byte(r: &mut impl BufRead) -> io::Result<Option<u8>> {
    let b = r.fill_buf()?.first().copied();
    if b.is_some() {
        r.consume(1);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::reaches_eoi;

    fn ok(bytes: &[u8]) -> bool {
        reaches_eoi(bytes).unwrap()
    }

    #[test]
    fn walks_segments_and_scans() {
        // SOI, APP1 holding a thumbnail's EOI, SOS (length 3) + data with stuffing and a
        // restart marker, EOI, then a trailer.
        let full = [
            0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x04, 0xFF, 0xD9, 0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12,
            0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9, 0xAA,
        ];
        assert!(ok(&full));
        for cut in 0..full.len() - 1 {
            assert!(!ok(&full[..cut]), "cut at {cut}");
        }
        assert!(!ok(b"\x89PNG"));
    }
}

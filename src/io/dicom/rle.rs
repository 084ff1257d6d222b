//! RLE Lossless frames (PS3.5 Annex G), decoded here rather than by `dicom-pixeldata`,
//! whose decoder indexes past a segment that decodes short and panics (found by fuzzing
//! `dicom_series`). A malformed frame becomes an error naming what is wrong.
//!
//! A frame is one fragment: a 64-byte header (the number of segments, then 15 offsets
//! from the start of the fragment, little endian), then the segments. Each segment holds
//! one byte of every pixel, most significant byte first, packed with PackBits: a header
//! byte `n` in 0..=127 copies the next `n + 1` bytes, `n` in -127..=-1 repeats the next
//! byte `1 - n` times, -128 does nothing.

/// Decodes one frame of `rows x columns` single-sample pixels of `bytes_per_sample` bytes
/// to little-endian bytes.
pub(crate) fn decode_frame(
    fragment: &[u8],
    rows: usize,
    columns: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, String> {
    if fragment.len() < 64 {
        return Err(format!(
            "RLE frame of {} bytes is shorter than its 64-byte header",
            fragment.len()
        ));
    }
    let word = |i: usize| {
        u32::from_le_bytes([
            fragment[4 * i],
            fragment[4 * i + 1],
            fragment[4 * i + 2],
            fragment[4 * i + 3],
        ]) as usize
    };
    let segments = word(0);
    if segments != bytes_per_sample {
        return Err(format!(
            "RLE header declares {segments} segment(s); {bytes_per_sample}-byte samples need {bytes_per_sample}"
        ));
    }
    let pixels = rows
        .checked_mul(columns)
        .ok_or_else(|| "RLE frame size overflows".to_string())?;
    let mut out = vec![0u8; pixels * bytes_per_sample];
    for s in 0..segments {
        let start = word(1 + s);
        let end = if s + 1 < segments {
            word(2 + s)
        } else {
            fragment.len()
        };
        if start < 64 || start > end || end > fragment.len() {
            return Err(format!(
                "RLE segment {} spans bytes {start}..{end} of a {}-byte frame",
                s + 1,
                fragment.len()
            ));
        }
        // Segment s holds byte s of each sample, most significant first; the output is
        // little endian.
        let byte = bytes_per_sample - 1 - s;
        unpack(&fragment[start..end], pixels, |p, v| {
            out[p * bytes_per_sample + byte] = v
        })
        .map_err(|e| format!("RLE segment {}: {e}", s + 1))?;
    }
    Ok(out)
}

/// PackBits-decodes `data` into exactly `count` bytes, handed to `put(index, byte)`;
/// bytes past `count` (an even-length pad) are ignored.
fn unpack(data: &[u8], count: usize, mut put: impl FnMut(usize, u8)) -> Result<(), String> {
    let mut at = 0;
    let mut n = 0;
    while n < count {
        let Some(&header) = data.get(at) else {
            return Err(format!("decodes to {n} bytes, the frame needs {count}"));
        };
        at += 1;
        let header = header as i8;
        if header >= 0 {
            let len = header as usize + 1;
            let literal = data
                .get(at..at + len)
                .ok_or_else(|| format!("a literal run of {len} bytes goes past the segment"))?;
            for &v in literal.iter().take(count - n) {
                put(n, v);
                n += 1;
            }
            at += len;
        } else if header != -128 {
            let len = (1 - header as isize) as usize;
            let &v = data
                .get(at)
                .ok_or_else(|| "a repeat run has no byte to repeat".to_string())?;
            for _ in 0..len.min(count - n) {
                put(n, v);
                n += 1;
            }
            at += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut offset = 64u32;
        for (s, seg) in segments.iter().enumerate() {
            b[4 + 4 * s..8 + 4 * s].copy_from_slice(&offset.to_le_bytes());
            offset += seg.len() as u32;
        }
        for seg in segments {
            b.extend_from_slice(seg);
        }
        b
    }

    #[test]
    fn literal_and_repeat_runs_interleave_into_little_endian_samples() {
        // 2 x 3 pixels of 16 bits: high bytes 1,1,1,1,2,3 (repeat then literal), low bytes
        // 0x10..0x15 (one literal run), plus a pad byte and a no-op header.
        let high: &[u8] = &[0xFD, 1, 0x80, 0x01, 2, 3, 0];
        let low: &[u8] = &[0x05, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15];
        let out = decode_frame(&frame(&[high, low]), 2, 3, 2).unwrap();
        let samples: Vec<u16> = out
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(
            samples,
            vec![0x0110, 0x0111, 0x0112, 0x0113, 0x0214, 0x0315]
        );
    }

    #[test]
    fn thirty_two_bit_samples_take_four_segments() {
        let segments: [&[u8]; 4] = [&[0x00, 0x12], &[0x00, 0x34], &[0x00, 0x56], &[0x00, 0x78]];
        let out = decode_frame(&frame(&segments), 1, 1, 4).unwrap();
        assert_eq!(
            u32::from_le_bytes([out[0], out[1], out[2], out[3]]),
            0x1234_5678
        );
    }

    #[test]
    fn short_or_inconsistent_frames_are_errors_not_panics() {
        // The fuzzer's case: a segment that decodes to fewer bytes than the frame.
        let short = frame(&[&[0x81, 0], &[0x81, 0]]);
        let err = decode_frame(&short, 16, 16, 2).unwrap_err();
        assert!(
            err.contains("decodes to 128 bytes, the frame needs 256"),
            "{err}"
        );
        assert!(decode_frame(&short, 8, 16, 2).is_ok());
        assert!(decode_frame(&short[..40], 8, 16, 2)
            .unwrap_err()
            .contains("shorter than its 64-byte header"));
        assert!(decode_frame(&short, 8, 16, 1)
            .unwrap_err()
            .contains("2 segment(s)"));
        let mut bad_offset = short.clone();
        bad_offset[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_frame(&bad_offset, 8, 16, 2)
            .unwrap_err()
            .contains("RLE segment 1 spans"));
        let literal_past_end = frame(&[&[0x10, 1, 2]]);
        assert!(decode_frame(&literal_past_end, 4, 4, 1)
            .unwrap_err()
            .contains("goes past the segment"));
    }
}

//! Siemens CSA headers: the private (0029,xx10) "CSA Image Header Info" element.
//!
//! Only what de-mosaicing needs is read: `NumberOfImagesInMosaic` and
//! `SliceNormalVector`. The layout (undocumented by Siemens; described by nibabel's
//! `nicom/csareader.py` and dcm2niix's `nii_dicom.cpp`) is: an optional `SV10` + 4-byte
//! signature and then, little endian, `n_tags: u32`, `unused: u32`, and per tag a 64-byte
//! NUL-terminated name, `vm: i32`, a 4-byte VR, `syngo_dt: i32`, `n_items: u32`,
//! `xx: u32`; per item four `u32` of which the second is the value length, then the value
//! padded to a multiple of 4 bytes. Every length is checked against the buffer.

/// Largest tag and item counts accepted (real headers have about 100 tags).
const MAX_TAGS: u32 = 1024;
const MAX_ITEMS: u32 = 1024;

/// One CSA tag: its name and its item values as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CsaTag {
    pub name: String,
    pub items: Vec<String>,
}

/// Parses a CSA header; `None` when the bytes are not one.
pub(crate) fn parse(bytes: &[u8]) -> Option<Vec<CsaTag>> {
    let mut r = Reader { bytes, at: 0 };
    if bytes.starts_with(b"SV10") {
        r.at = 8;
    }
    let n_tags = r.u32()?;
    let _unused = r.u32()?;
    if n_tags == 0 || n_tags > MAX_TAGS {
        return None;
    }
    let mut tags = Vec::with_capacity(n_tags as usize);
    for _ in 0..n_tags {
        let name_bytes = r.take(64)?;
        let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(64);
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        let _vm = r.u32()?;
        let _vr = r.take(4)?;
        let _syngo_dt = r.u32()?;
        let n_items = r.u32()?;
        let _xx = r.u32()?;
        if n_items > MAX_ITEMS {
            return None;
        }
        let mut items = Vec::new();
        for _ in 0..n_items {
            let header = r.take(16)?;
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let padded = len.checked_add(3)? / 4 * 4;
            let value = r.take(padded)?;
            if len > 0 {
                let text = String::from_utf8_lossy(&value[..len]);
                items.push(text.trim_end_matches(['\0', ' ']).trim().to_string());
            }
        }
        tags.push(CsaTag { name, items });
    }
    Some(tags)
}

/// The first item of tag `name` parsed as numbers.
pub(crate) fn numbers(tags: &[CsaTag], name: &str) -> Option<Vec<f64>> {
    let tag = tags.iter().find(|t| t.name == name)?;
    let values: Option<Vec<f64>> = tag.items.iter().map(|s| s.parse().ok()).collect();
    values.filter(|v| !v.is_empty())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Writes a CSA header (SV10 layout) with the given tags; for tests.
#[cfg(test)]
pub(crate) fn write(tags: &[(&str, &[&str])]) -> Vec<u8> {
    let mut out = b"SV10\x04\x03\x02\x01".to_vec();
    out.extend_from_slice(&(tags.len() as u32).to_le_bytes());
    out.extend_from_slice(&77u32.to_le_bytes());
    for (name, items) in tags {
        let mut n = [0u8; 64];
        n[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&n);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(b"IS\0\0");
        out.extend_from_slice(&6u32.to_le_bytes());
        out.extend_from_slice(&(items.len() as u32).to_le_bytes());
        out.extend_from_slice(&77u32.to_le_bytes());
        for item in *items {
            let len = item.len() as u32 + 1;
            for v in [len, len, 77, len] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let mut value = item.as_bytes().to_vec();
            value.push(0);
            while value.len() % 4 != 0 {
                value.push(0);
            }
            out.extend_from_slice(&value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_wrote() {
        let bytes = write(&[
            ("EchoLinePosition", &["32"]),
            ("NumberOfImagesInMosaic", &["35"]),
            ("SliceNormalVector", &["0.0", "0.10799944", "0.99415095"]),
        ]);
        let tags = parse(&bytes).unwrap();
        assert_eq!(numbers(&tags, "NumberOfImagesInMosaic"), Some(vec![35.0]));
        assert_eq!(
            numbers(&tags, "SliceNormalVector"),
            Some(vec![0.0, 0.10799944, 0.99415095])
        );
        assert_eq!(numbers(&tags, "Missing"), None);
    }

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        let bytes = write(&[("NumberOfImagesInMosaic", &["35"])]);
        for cut in [0, 3, 8, 20, 90, bytes.len() - 1] {
            assert!(parse(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse(&[0xff; 64]).is_none());
    }
}

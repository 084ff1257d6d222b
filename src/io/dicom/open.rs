//! Opening DICOM files, including the ones `OpenFileOptions` refuses: files without the
//! 128-byte preamble, without a file meta group (a bare data set, as some old archives
//! store them), or with a meta group that lacks its group length or transfer syntax.
//!
//! The strict reader runs first; only when it fails does the lenient path sniff the bytes
//! (PS3.10 7.1: preamble + `DICM`, then the group 0002 elements in Explicit VR Little
//! Endian) and read the data set with the transfer syntax it finds or guesses.

use super::guard::{
    check_data_set, check_deflated_data_set, Encoding, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
};
use dicom::core::VR;
use dicom::dictionary_std::{tags, uids};
use dicom::encoding::transfer_syntax::{Endianness, TransferSyntaxIndex};
use dicom::object::meta::FileMetaTableBuilder;
use dicom::object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom::transfer_syntax::TransferSyntaxRegistry;
use std::io::{Read, Seek};
use std::path::Path;

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// PS3.10 file: `DICM` at byte 128 (or at byte 0, preamble missing).
    Part10,
    /// No `DICM` magic, but the bytes start like a data set (a small even group number).
    BareDataSet,
    /// Anything else.
    NotDicom,
}

/// Looks at the first 132 bytes of `path`.
pub(crate) fn sniff_file(path: &Path) -> std::io::Result<Sniff> {
    let mut head = Vec::with_capacity(132);
    std::fs::File::open(path)?
        .take(132)
        .read_to_end(&mut head)?;
    Ok(sniff(&head))
}

/// Classifies the first bytes of a file (at least 132 when the file has them).
pub(crate) fn sniff(head: &[u8]) -> Sniff {
    if (head.len() >= 132 && &head[128..132] == b"DICM") || head.starts_with(b"DICM") {
        return Sniff::Part10;
    }
    if head.len() < 8 {
        return Sniff::NotDicom;
    }
    let le_group = u16::from_le_bytes([head[0], head[1]]);
    let be_group = u16::from_be_bytes([head[0], head[1]]);
    let plausible = |g: u16| g != 0 && g.is_multiple_of(2) && g <= 0x0010;
    if plausible(le_group) || plausible(be_group) {
        Sniff::BareDataSet
    } else {
        Sniff::NotDicom
    }
}

/// How much of a file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extent {
    /// Stop before Pixel Data (7FE0,0010): headers for discovery.
    Header,
    /// The whole object, pixel data included.
    All,
}

/// A DICOM object, and notes on how it was read (e.g. "no file meta information").
pub(crate) struct Opened {
    pub obj: DefaultDicomObject,
    pub notes: Vec<String>,
}

/// Opens a DICOM file: strictly first, leniently when that fails (see the module docs).
/// The error is the strict reader's message when neither works.
pub(crate) fn open(path: &Path, extent: Extent) -> Result<Opened, String> {
    guard_file(path, extent)?;
    let strict = match extent {
        Extent::Header => OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path),
        Extent::All => OpenFileOptions::new().open_file(path),
    };
    let strict_err = match strict {
        Ok(obj) => {
            return Ok(Opened {
                obj,
                notes: Vec::new(),
            })
        }
        Err(e) => error_chain(&e),
    };
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    match open_lenient(&bytes) {
        Some(Ok(opened)) => Ok(opened),
        Some(Err(lenient_err)) => Err(format!(
            "{strict_err} (read without the file meta group: {lenient_err})"
        )),
        None => Err(strict_err),
    }
}

/// Checks every declared length of a PS3.10 file against its size (see [`super::guard`])
/// before `dicom-object` reads it; bare data sets are checked on the lenient path.
fn guard_file(path: &Path, extent: Extent) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let mut r = std::io::BufReader::with_capacity(16 << 10, file);
    let mut head = Vec::with_capacity(132);
    (&mut r)
        .take(132)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let start = if head.len() >= 132 && &head[128..132] == b"DICM" {
        132
    } else if head.starts_with(b"DICM") {
        4
    } else {
        return Ok(());
    };
    r.seek(std::io::SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let (data_start, ts, past_end) =
        read_meta_group_checked(&mut r, size).map_err(|e| e.to_string())?;
    if let Some(past_end) = past_end {
        return Err(past_end);
    }
    if ts.as_deref() == Some(DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN) {
        r.seek(std::io::SeekFrom::Start(data_start))
            .map_err(|e| e.to_string())?;
        return check_deflated_data_set(r, extent == Extent::Header);
    }
    let Some(encoding) = ts.as_deref().and_then(Encoding::of) else {
        return Ok(());
    };
    r.seek(std::io::SeekFrom::Start(data_start))
        .map_err(|e| e.to_string())?;
    check_data_set(&mut r, size, encoding, extent == Extent::Header)
}

/// The lenient path: `None` when the bytes do not look like DICOM at all.
fn open_lenient(bytes: &[u8]) -> Option<Result<Opened, String>> {
    let mut notes = Vec::new();
    let (start, meta_ts) = match sniff(bytes) {
        Sniff::NotDicom => return None,
        Sniff::BareDataSet => {
            notes.push("no file meta information (bare data set)".to_string());
            (0, None)
        }
        Sniff::Part10 => {
            let at = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
                132
            } else {
                4
            };
            let (end, ts) = skip_meta_group(bytes, at);
            if ts.is_none() {
                notes.push("file meta group has no Transfer Syntax UID".to_string());
            }
            (end, ts)
        }
    };
    let data = &bytes[start..];
    let ts_uid: String = match meta_ts.filter(|uid| TransferSyntaxRegistry.get(uid).is_some()) {
        Some(uid) => uid,
        None => {
            let guessed = guess_transfer_syntax(data);
            notes.push(format!(
                "transfer syntax guessed from the data: {}",
                super::transfer_syntax_name(guessed)
            ));
            guessed.to_string()
        }
    };
    let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
        return Some(Err(format!("unknown transfer syntax {ts_uid}")));
    };
    if ts_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
        if let Err(e) = check_deflated_data_set(data, false) {
            return Some(Err(e));
        }
    } else if let Some(encoding) = Encoding::of(&ts_uid) {
        let mut cursor = std::io::Cursor::new(data);
        if let Err(e) = check_data_set(&mut cursor, data.len() as u64, encoding, false) {
            return Some(Err(e));
        }
    }
    let obj = match InMemDicomObject::read_dataset_with_ts(data, ts) {
        Ok(obj) => obj,
        Err(e) => return Some(Err(error_chain(&e))),
    };
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid.as_str())
        .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("2.25.0");
    Some(
        obj.with_meta(meta)
            .map(|obj| Opened { obj, notes })
            .map_err(|e| error_chain(&e)),
    )
}

/// Walks the group 0002 elements (always Explicit VR Little Endian) from `at`; returns
/// where the data set starts and the Transfer Syntax UID if one was found. An element
/// running past the end stops the walk there (the data set walk then reports it).
fn skip_meta_group(bytes: &[u8], at: usize) -> (usize, Option<String>) {
    let mut cursor = std::io::Cursor::new(bytes);
    cursor.set_position(at as u64);
    match read_meta_group(&mut cursor, bytes.len() as u64) {
        Ok((end, ts)) => (end as usize, ts),
        Err(_) => (at, None),
    }
}

/// [`skip_meta_group`] on a reader positioned at the first meta element, for a source
/// of `size` bytes; reads only the element headers and the transfer syntax.
fn read_meta_group<R: Read + Seek>(r: &mut R, size: u64) -> std::io::Result<(u64, Option<String>)> {
    read_meta_group_checked(r, size).map(|(end, ts, _)| (end, ts))
}

/// [`read_meta_group`], and the element whose declared length runs past the end of the
/// source, when one does (the walk stops there).
fn read_meta_group_checked<R: Read + Seek>(
    r: &mut R,
    size: u64,
) -> std::io::Result<(u64, Option<String>, Option<String>)> {
    let mut ts = None;
    // Positions are counted here and skips are relative, so a `BufReader` keeps its buffer.
    let start = r.stream_position()?;
    let mut at = start;
    // With a group length first (as PS3.10 requires), the group ends where it says, as
    // dicom-object reads it: elements of other groups inside it are skipped, not taken
    // for the data set (found by fuzzing: the data set walk then started elsewhere than
    // the reader, and checked nothing it read).
    let mut group_end: Option<u64> = None;
    loop {
        let mut h = [0u8; 8];
        if group_end.is_some_and(|end| at >= end) || at + 8 > size {
            return Ok((at, ts, None));
        }
        r.read_exact(&mut h)?;
        let group = u16::from_le_bytes([h[0], h[1]]);
        if group != 0x0002 && group_end.is_none() {
            return Ok((at, ts, None));
        }
        let element = u16::from_le_bytes([h[2], h[3]]);
        if at == start && group == 0x0002 && element == 0 && &h[4..8] == b"UL\x04\x00" {
            let mut v = [0u8; 4];
            if at + 12 > size {
                return Ok((at, ts, None));
            }
            r.read_exact(&mut v)?;
            at += 12;
            group_end = Some(at + u32::from_le_bytes(v) as u64);
            continue;
        }
        let (header, len) = if long_length_vr([h[4], h[5]]) {
            let mut l = [0u8; 4];
            if at + 12 > size {
                return Ok((at, ts, None));
            }
            r.read_exact(&mut l)?;
            (12, u32::from_le_bytes(l) as u64)
        } else {
            (8, u16::from_le_bytes([h[6], h[7]]) as u64)
        };
        let value_end = at + header + len;
        if value_end > size {
            let past = format!(
                "file meta element ({group:04X},{element:04X}) declares {len} bytes but the file ends {} bytes after its header",
                size.saturating_sub(at + header)
            );
            return Ok((at, ts, Some(past)));
        }
        if group == 0x0002 && element == 0x0010 && len <= 1024 {
            let mut v = vec![0u8; len as usize];
            r.read_exact(&mut v)?;
            let uid = String::from_utf8_lossy(&v);
            ts = Some(uid.trim_end_matches(['\0', ' ']).to_string());
        } else {
            r.seek_relative(len as i64)?;
        }
        at = value_end;
    }
}

fn long_length_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Guesses the transfer syntax of a bare data set: big endian when the first group number
/// reads as a small even number only in big endian; explicit VR when bytes 4..6 spell a VR.
fn guess_transfer_syntax(data: &[u8]) -> &'static str {
    if data.len() < 8 {
        return uids::IMPLICIT_VR_LITTLE_ENDIAN;
    }
    let le_group = u16::from_le_bytes([data[0], data[1]]);
    let big_endian = le_group > 0x0010 && u16::from_be_bytes([data[0], data[1]]) <= 0x0010;
    let explicit = VR::from_binary([data[4], data[5]]).is_some();
    match (big_endian, explicit) {
        (true, _) => "1.2.840.10008.1.2.2", // Explicit VR Big Endian (retired)
        (false, true) => uids::EXPLICIT_VR_LITTLE_ENDIAN,
        (false, false) => uids::IMPLICIT_VR_LITTLE_ENDIAN,
    }
}

/// The transfer syntax UID of an opened object, trimmed of padding.
pub(crate) fn ts_uid(obj: &DefaultDicomObject) -> String {
    obj.meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// True when the transfer syntax stores values big endian (Explicit VR Big Endian).
pub(crate) fn is_big_endian(ts_uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(ts_uid)
        .map(|ts| ts.endianness() == Endianness::Big)
        .unwrap_or(false)
}

/// An error and its causes, one line: "outer: cause: cause".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Part 10 file in Deflated Explicit VR Little Endian whose data set is `data_set`.
    fn deflated_file(data_set: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        let ts = DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.as_bytes();
        bytes.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        bytes.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        bytes.extend_from_slice(ts);
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(data_set).unwrap();
        bytes.extend(deflate.finish().unwrap());
        bytes
    }

    #[test]
    fn the_data_set_starts_where_the_meta_group_length_says() {
        // Found by the fuzzer (dicom_series, oom-c1de8dbb): an element of another group
        // inside the file meta group. dicom-object reads the group by its length; the walk
        // stopped at that element, took it (group FE01, past Pixel Data) for the end of the
        // header, and let a 3.7 GB length in the data set through.
        let mut meta = vec![
            0x01, 0xFE, 0x03, 0x00, b'U', b'I', 4, 0, b'1', b'.', b'2', 0,
        ];
        let ts = b"1.2.840.10008.1.2.1\0";
        meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0]);
        meta.extend_from_slice(ts);
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        bytes.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        bytes.extend(meta);
        bytes.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 0x02, 0x00, b'C', b'T']);
        bytes.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
        bytes.extend_from_slice(&3_758_161_918u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.dcm");
        std::fs::write(&path, &bytes).unwrap();
        for extent in [Extent::Header, Extent::All] {
            let err = open(&path, extent).err().expect("refused");
            assert!(
                err.contains("(0009,0010) declares 3758161918 bytes"),
                "{err}"
            );
        }
    }

    #[test]
    fn deflated_data_sets_are_walked_before_they_are_read() {
        // Found by the fuzzer (dicom_series, oom-2fe63686): a deflated data set whose inflated
        // bytes declare a 3.5 GB value made dicom-parser allocate it, because the length walk
        // skipped deflated files. (0008,0060) CS "CT", then (0029,1010) OB of 0xD4D4D4D4
        // bytes holding 4.
        let mut data_set = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 0x02, 0x00, b'C', b'T'];
        data_set.extend_from_slice(&[0x29, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        data_set.extend_from_slice(&0xD4D4_D4D4u32.to_le_bytes());
        data_set.extend_from_slice(&[1, 2, 3, 4]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deflated.dcm");
        std::fs::write(&path, deflated_file(&data_set)).unwrap();
        for extent in [Extent::Header, Extent::All] {
            let err = open(&path, extent)
                .err()
                .expect("a lying length is refused");
            assert!(err.contains("(0029,1010)"), "{extent:?}: {err}");
        }
        // The same data set with its true length still reads.
        let len = data_set.len();
        data_set[len - 8..len - 4].copy_from_slice(&4u32.to_le_bytes());
        std::fs::write(&path, deflated_file(&data_set)).unwrap();
        let opened = open(&path, Extent::All).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ts_uid(&opened.obj), DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN);
    }

    #[test]
    fn meta_elements_longer_than_the_file_are_refused_before_they_are_read() {
        // Found by the fuzzer (dicom_series, oom after the deflate fix): a file meta element
        // declaring 2.6 GB made dicom-object allocate it while reading the meta group.
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0]);
        bytes.extend_from_slice(&0x9E00_0000u32.to_le_bytes());
        bytes.extend_from_slice(&[0, 1]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.dcm");
        std::fs::write(&path, bytes).unwrap();
        let err = open(&path, Extent::Header).err().expect("refused");
        assert!(
            err.contains("file meta element (0002,0001) declares 2650800128 bytes but the file ends 2 bytes after its header"),
            "{err}"
        );
    }

    #[test]
    fn sniff_tells_part10_bare_and_other_files_apart() {
        let mut part10 = vec![0u8; 132];
        part10[128..132].copy_from_slice(b"DICM");
        assert_eq!(sniff(&part10), Sniff::Part10);
        // (0008,0005) CS in explicit VR little endian
        let bare = [0x08, 0x00, 0x05, 0x00, b'C', b'S', 0x0a, 0x00];
        assert_eq!(sniff(&bare), Sniff::BareDataSet);
        assert_eq!(
            guess_transfer_syntax(&bare),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        let implicit = [0x08, 0x00, 0x05, 0x00, 0x0a, 0x00, 0x00, 0x00];
        assert_eq!(
            guess_transfer_syntax(&implicit),
            uids::IMPLICIT_VR_LITTLE_ENDIAN
        );
        let big = [0x00, 0x08, 0x00, 0x05, b'C', b'S', 0x00, 0x0a];
        assert_eq!(guess_transfer_syntax(&big), "1.2.840.10008.1.2.2");
        assert_eq!(sniff(b"NRRD0004\ntype: short\n"), Sniff::NotDicom);
        assert_eq!(sniff(b"# README"), Sniff::NotDicom);
    }

    #[test]
    fn meta_group_walk_finds_the_transfer_syntax_and_the_data_set() {
        let mut b = Vec::new();
        // (0002,0010) UI "1.2.840.10008.1.2.1\0"
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 20, 0]);
        b.extend_from_slice(b"1.2.840.10008.1.2.1\0");
        // (0002,0001) OB, long length 2
        b.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
        let start = b.len();
        b.extend_from_slice(&[0x08, 0x00, 0x05, 0x00]);
        let (end, ts) = skip_meta_group(&b, 0);
        assert_eq!(end, start);
        assert_eq!(ts.as_deref(), Some("1.2.840.10008.1.2.1"));
    }
}

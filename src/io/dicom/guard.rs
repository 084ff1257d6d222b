//! A structural pass over a DICOM file that checks every declared length against the bytes
//! that are really there, before `dicom-object` reads it.
//!
//! `dicom-parser` allocates and zero-fills the declared length of a value before reading
//! it: a corrupt length (pydicom's `UN_sequence.dcm` claims 3.7 GB, `SC_rgb_jpeg.dcm`
//! 1.2 GB) costs that much memory and seconds of page faults per file. This pass walks the
//! element headers (PS3.5 7.1 for explicit and implicit VR, 7.5 for sequences and items,
//! A.4 for encapsulated pixel data), skips values with a seek, and rejects any length that
//! runs past the end of its container or of the file. A deflated data set (Deflated
//! Explicit VR Little Endian, PS3.5 A.5) is inflated first and the inflated bytes walked:
//! its lengths refer to them.

use dicom::core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom::core::{Tag, VR};
use dicom::object::StandardDataDictionary;
use std::io::{Read, Seek};

/// Deepest sequence nesting accepted (real files nest a handful of levels).
const MAX_DEPTH: usize = 64;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encoding {
    pub explicit: bool,
    pub big_endian: bool,
}

impl Encoding {
    /// The encoding of a transfer syntax; `None` for deflated or unknown syntaxes, which
    /// this pass does not walk.
    pub(crate) fn of(ts_uid: &str) -> Option<Encoding> {
        match ts_uid {
            "1.2.840.10008.1.2" => Some(Encoding {
                explicit: false,
                big_endian: false,
            }),
            "1.2.840.10008.1.2.2" => Some(Encoding {
                explicit: true,
                big_endian: true,
            }),
            "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" | "1.2.840.10008.1.2.4.205" => None,
            uid if uid.starts_with("1.2.840.10008.1.2") => Some(Encoding {
                explicit: true,
                big_endian: false,
            }),
            _ => None,
        }
    }
}

/// Deflated Explicit VR Little Endian: the data set after the meta group is one raw
/// deflate stream (PS3.5 A.5).
pub(crate) const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";

/// [`check_data_set`] for a deflated data set read from `r`: inflated in memory (which grows
/// only with what the stream yields), then walked as Explicit VR Little Endian. A stream
/// that stops inflating with an error is walked as far as it inflated: a length past that
/// point is refused here, and the reader reports the corrupt stream itself.
pub(crate) fn check_deflated_data_set<R: Read>(
    r: R,
    stop_at_pixel_data: bool,
) -> Result<(), String> {
    let mut inflated = Vec::new();
    // On an error, read_to_end keeps what was inflated before it; that part is walked.
    let _ = flate2::read::DeflateDecoder::new(r).read_to_end(&mut inflated);
    let end = inflated.len() as u64;
    let encoding = Encoding {
        explicit: true,
        big_endian: false,
    };
    check_data_set(
        &mut std::io::Cursor::new(inflated),
        end,
        encoding,
        stop_at_pixel_data,
    )
}

/// Walks a data set from the reader's position to `end` (the file size); with
/// `stop_at_pixel_data`, stops at the top-level Pixel Data element.
pub(crate) fn check_data_set<R: Read + Seek>(
    r: &mut R,
    end: u64,
    encoding: Encoding,
    stop_at_pixel_data: bool,
) -> Result<(), String> {
    let pos = r.stream_position().map_err(|e| e.to_string())?;
    let mut w = Walker {
        r,
        pos,
        encoding,
        stop_at_pixel_data,
    };
    w.data_set(end, true, 0, true)
}

/// The size of one value of a VR as dicom-parser reads it (1 for bytes and text).
fn value_unit(vr: Option<VR>) -> u32 {
    match vr {
        Some(VR::US | VR::SS | VR::OW) => 2,
        Some(VR::UL | VR::SL | VR::FL | VR::OF | VR::OL | VR::AT) => 4,
        Some(VR::FD | VR::OD | VR::SV | VR::UV | VR::OV) => 8,
        _ => 1,
    }
}

struct Walker<'a, R> {
    r: &'a mut R,
    /// Position in the source, counted here: `BufReader::stream_position` is a system call.
    pos: u64,
    encoding: Encoding,
    stop_at_pixel_data: bool,
}

/// How an element ended a data set walk.
enum Step {
    Continue,
    /// An item delimiter (for undefined-length items) or the stop tag.
    Done,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn pos(&mut self) -> Result<u64, String> {
        Ok(self.pos)
    }

    fn bytes<const N: usize>(&mut self) -> Result<Option<[u8; N]>, String> {
        let mut b = [0u8; N];
        match self.r.read_exact(&mut b) {
            Ok(()) => {
                self.pos += N as u64;
                Ok(Some(b))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.encoding.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.encoding.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Skips `len` bytes; `seek_relative` keeps a `BufReader`'s buffer when it can.
    fn skip(&mut self, len: u32) -> Result<(), String> {
        self.r
            .seek_relative(len as i64)
            .map_err(|e| e.to_string())?;
        self.pos += len as u64;
        Ok(())
    }

    fn seek_to(&mut self, target: u64) -> Result<(), String> {
        let delta = target as i64 - self.pos as i64;
        self.r.seek_relative(delta).map_err(|e| e.to_string())?;
        self.pos = target;
        Ok(())
    }

    /// Elements up to `limit`: the end of a defined-length item (or of the file at the
    /// top level), or, when `defined` is false, the item delimiter that must come first.
    fn data_set(
        &mut self,
        limit: u64,
        defined: bool,
        depth: usize,
        top: bool,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH} levels"));
        }
        loop {
            if self.pos()? >= limit {
                return if defined || top {
                    Ok(())
                } else {
                    Err("data ends inside a sequence item".to_string())
                };
            }
            match self.element(limit, depth, top)? {
                Step::Continue => {}
                Step::Done => return Ok(()),
            }
        }
    }

    fn element(&mut self, limit: u64, depth: usize, top: bool) -> Result<Step, String> {
        let Some(t) = self.bytes::<4>()? else {
            // End of file: fine at the top level of a file, truncated inside a sequence.
            return if top {
                Ok(Step::Done)
            } else {
                Err("file ends inside a sequence".to_string())
            };
        };
        let tag = Tag(self.u16([t[0], t[1]]), self.u16([t[2], t[3]]));
        if tag.group() == 0xFFFE {
            // Item delimiter (or a stray delimiter): its length is 0. A stray one at the
            // top level ends nothing: dicom-parser reads on past it, so the walk must too
            // (found by fuzzing: the elements after it went unchecked, and a 3 GB length
            // there was allocated).
            let _ = self.bytes::<4>()?;
            return Ok(if tag.element() == 0xE00D && !top {
                Step::Done
            } else {
                Step::Continue
            });
        }
        if top && self.stop_at_pixel_data && tag >= PIXEL_DATA {
            return Ok(Step::Done);
        }
        let (vr, len) = match self.header(tag) {
            // A few stray bytes at the end of a file are dicom-parser's business.
            Err(e) if top && e.starts_with("file ends") => return Ok(Step::Done),
            other => other?,
        };
        let value_start = self.pos()?;
        if len == UNDEFINED {
            if tag == PIXEL_DATA {
                self.fragments(limit)?;
            } else {
                // Any other undefined length is read as a sequence in the same encoding
                // (what dicom-parser does, even for UN).
                self.items(limit, false, depth + 1)?;
            }
            return Ok(Step::Continue);
        }
        let value_end = value_start + len as u64;
        if value_end > limit {
            return Err(format!(
                "element {tag} declares {len} bytes but only {} remain{}",
                limit.saturating_sub(value_start),
                if top {
                    " in the file"
                } else {
                    " in its sequence item"
                }
            ));
        }
        if vr == Some(VR::SQ) {
            self.items(value_end, true, depth + 1)?;
            self.seek_to(value_end)?;
        } else {
            // dicom-parser reads binary values as whole numbers and leaves the remainder
            // of a length that is not a multiple of their size (a UL of 47 bytes is read as
            // 44): the next element starts where it stops, so the walk must stop there
            // too (found by fuzzing: the walk and the reader fell out of step by 3 bytes).
            self.skip(len - len % value_unit(vr))?;
        }
        Ok(Step::Continue)
    }

    /// The VR (when known) and the length of the element whose tag was just read.
    fn header(&mut self, tag: Tag) -> Result<(Option<VR>, u32), String> {
        if self.encoding.explicit {
            let Some(v) = self.bytes::<2>()? else {
                return Err(format!("file ends in the header of element {tag}"));
            };
            let vr = VR::from_binary(v);
            // PS3.5 7.1.2: these VRs have a 2-byte length; every other one, and an
            // unknown VR (which dicom-parser reads as UN), has 2 reserved bytes and 4.
            let short = matches!(
                vr,
                Some(
                    VR::AE
                        | VR::AS
                        | VR::AT
                        | VR::CS
                        | VR::DA
                        | VR::DS
                        | VR::DT
                        | VR::FL
                        | VR::FD
                        | VR::IS
                        | VR::LO
                        | VR::LT
                        | VR::PN
                        | VR::SH
                        | VR::SL
                        | VR::SS
                        | VR::ST
                        | VR::TM
                        | VR::UI
                        | VR::UL
                        | VR::US
                )
            );
            let long = !short;
            let len = if long {
                let Some(b) = self.bytes::<6>()? else {
                    return Err(format!("file ends in the header of element {tag}"));
                };
                self.u32([b[2], b[3], b[4], b[5]])
            } else {
                let Some(b) = self.bytes::<2>()? else {
                    return Err(format!("file ends in the header of element {tag}"));
                };
                self.u16(b) as u32
            };
            Ok((vr, len))
        } else {
            let Some(b) = self.bytes::<4>()? else {
                return Err(format!("file ends in the header of element {tag}"));
            };
            let vr = StandardDataDictionary
                .by_tag(tag)
                .and_then(|e| match e.vr() {
                    VirtualVr::Exact(vr) => Some(vr),
                    _ => None,
                });
            Ok((vr, self.u32(b)))
        }
    }

    /// Items of a sequence, up to `limit` (the end of a defined-length sequence, or the
    /// tightest enclosing bound) or, when `defined` is false, a sequence delimiter.
    fn items(&mut self, limit: u64, defined: bool, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH} levels"));
        }
        loop {
            let pos = self.pos()?;
            if pos >= limit {
                return if defined {
                    Ok(())
                } else {
                    Err("data ends inside a sequence".to_string())
                };
            }
            let Some(t) = self.bytes::<8>()? else {
                return Err("file ends inside a sequence".to_string());
            };
            let tag = Tag(self.u16([t[0], t[1]]), self.u16([t[2], t[3]]));
            let len = self.u32([t[4], t[5], t[6], t[7]]);
            match tag {
                Tag(0xFFFE, 0xE0DD) => return Ok(()),
                Tag(0xFFFE, 0xE000) if len == UNDEFINED => {
                    self.data_set(limit, false, depth, false)?
                }
                Tag(0xFFFE, 0xE000) => {
                    let start = pos + 8;
                    let item_end = start + len as u64;
                    if item_end > limit {
                        return Err(format!(
                            "a sequence item declares {len} bytes but only {} remain",
                            limit.saturating_sub(start)
                        ));
                    }
                    self.data_set(item_end, true, depth, false)?;
                    self.seek_to(item_end)?;
                }
                other => return Err(format!("expected a sequence item, found {other}")),
            }
        }
    }

    /// Fragments of encapsulated pixel data (items of raw bytes) up to the delimiter.
    fn fragments(&mut self, limit: u64) -> Result<(), String> {
        loop {
            let pos = self.pos()?;
            let Some(t) = self.bytes::<8>()? else {
                return Err("file ends inside the encapsulated pixel data".to_string());
            };
            let tag = Tag(self.u16([t[0], t[1]]), self.u16([t[2], t[3]]));
            let len = self.u32([t[4], t[5], t[6], t[7]]);
            match tag {
                Tag(0xFFFE, 0xE0DD) => return Ok(()),
                Tag(0xFFFE, 0xE000) => {
                    let frag_end = pos + 8 + len as u64;
                    if len == UNDEFINED || frag_end > limit {
                        return Err(format!(
                            "a pixel data fragment declares {len} bytes but only {} remain",
                            limit.saturating_sub(pos + 8)
                        ));
                    }
                    self.skip(len)?;
                }
                other => return Err(format!("expected a pixel data fragment, found {other}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const LE: Encoding = Encoding {
        explicit: true,
        big_endian: false,
    };

    fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tag.0.to_le_bytes());
        b.extend_from_slice(&tag.1.to_le_bytes());
        b.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"SQ" | b"UN") {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        b.extend_from_slice(value);
        b
    }

    fn check(bytes: &[u8]) -> Result<(), String> {
        check_data_set(&mut Cursor::new(bytes), bytes.len() as u64, LE, false)
    }

    #[test]
    fn well_formed_data_sets_pass() {
        let mut item = Vec::new();
        item.extend_from_slice(&element((0x0008, 0x0100), b"SH", b"T1"));
        let mut seq_value = vec![0xFE, 0xFF, 0x00, 0xE0];
        seq_value.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq_value.extend_from_slice(&item);
        let mut ds = element((0x0008, 0x0060), b"CS", b"CT");
        ds.extend(element((0x0008, 0x1032), b"SQ", &seq_value));
        ds.extend(element((0x7FE0, 0x0010), b"OB", &[1, 2, 3, 4]));
        assert_eq!(check(&ds), Ok(()));
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_anything_is_allocated() {
        let mut ds = element((0x0008, 0x0060), b"CS", b"CT");
        let mut bad = element((0x0008, 0x1115), b"UN", &[0; 4]);
        bad[8..12].copy_from_slice(&3_758_161_918u32.to_le_bytes());
        ds.extend(bad);
        let err = check(&ds).unwrap_err();
        assert!(
            err.contains("(0008,1115) declares 3758161918 bytes but only 4 remain"),
            "{err}"
        );
    }

    #[test]
    fn a_stray_item_delimiter_at_the_top_level_does_not_end_the_walk() {
        // Found by fuzzing (dicom_series): dicom-parser reads on past a top-level item
        // delimiter, so the lengths after it must be checked too.
        let mut ds = element((0x0008, 0x0060), b"CS", b"CT");
        ds.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        let mut bad = element((0x0009, 0x0010), b"OB", &[0; 4]);
        bad[8..12].copy_from_slice(&3_217_620_904u32.to_le_bytes());
        ds.extend(bad);
        let err = check(&ds).unwrap_err();
        assert!(
            err.contains("(0009,0010) declares 3217620904 bytes"),
            "{err}"
        );
    }

    #[test]
    fn binary_values_end_where_dicom_parser_stops_reading_them() {
        // Found by fuzzing (dicom_series, oom-95fc7ea4): a UL of 47 bytes, which
        // dicom-parser reads as 11 values (44 bytes); the element after it starts 3 bytes
        // earlier than its length says, and that one declares 2 GB.
        let mut ds = element((0x0008, 0x0060), b"CS", b"CT");
        let mut ul = element((0x0009, 0x0000), b"UL", &[0; 47]);
        ul.truncate(ul.len() - 3);
        ds.extend(ul);
        let mut bad = element((0x0009, 0x0010), b"OB", &[0; 4]);
        bad[8..12].copy_from_slice(&2_132_801_996u32.to_le_bytes());
        ds.extend(bad);
        ds.extend_from_slice(&[0; 3]);
        let err = check(&ds).unwrap_err();
        assert!(
            err.contains("(0009,0010) declares 2132801996 bytes"),
            "{err}"
        );
    }

    #[test]
    fn an_item_longer_than_its_sequence_is_refused() {
        let mut seq_value = vec![0xFE, 0xFF, 0x00, 0xE0];
        seq_value.extend_from_slice(&1000u32.to_le_bytes());
        seq_value.extend_from_slice(&[0; 8]);
        let ds = element((0x0008, 0x1032), b"SQ", &seq_value);
        assert!(check(&ds)
            .unwrap_err()
            .contains("sequence item declares 1000 bytes"));
    }

    #[test]
    fn deflated_syntaxes_are_not_walked() {
        assert_eq!(Encoding::of("1.2.840.10008.1.2.1.99"), None);
        assert_eq!(Encoding::of("1.2.840.10008.1.2.4.90"), Some(LE),);
    }
}

//! What discovery reads from one file: identity, pixel format, and per-frame geometry and
//! rescale, from the top level of classic images and from the functional groups of
//! enhanced multi-frame images (PS3.3 C.7.6.16: Per-Frame and Shared Functional Groups).

use super::open::{self, Extent};
use super::{csa, Mosaic, PixelFormat, Rescale, SampleKind};
use dicom::core::{PrimitiveValue, Tag};
use dicom::dictionary_std::{tags, uids};
use dicom::object::InMemDicomObject;
use std::path::{Path, PathBuf};

/// Names of the attributes that can tell apart frames sharing one position, in the order
/// they are tried when a series has to be split (see `assemble::split_duplicates`).
pub(crate) const SPLIT_KEYS: [&str; 8] = [
    "AcquisitionNumber",
    "TemporalPosition",
    "EchoTime",
    "ImageType",
    "StackID",
    "Rescale",
    "TriggerTime",
    "File",
];

/// Largest number of frames accepted from one file's header.
const MAX_FRAMES: usize = 1 << 20;

/// Header of one DICOM image file.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub path: PathBuf,
    pub transfer_syntax: String,
    pub series_uid: String,
    pub series_number: Option<i64>,
    pub description: String,
    pub modality: String,
    pub patient_id: String,
    pub study_uid: String,
    /// SOPInstanceUID (empty when the file has none).
    pub sop_instance_uid: String,
    /// SOPClassUID, or the file meta's MediaStorageSOPClassUID.
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub pixel: PixelFormat,
    pub frames: Vec<FrameHeader>,
    /// De-mosaicing parameters for a Siemens MOSAIC image.
    pub mosaic: Option<Mosaic>,
    /// CSA SliceNormalVector of a mosaic (the direction its tiles are stacked in).
    pub mosaic_normal: Option<[f64; 3]>,
    pub gantry_tilt: Option<f64>,
    /// Frames of a classic multi-frame image placed at regular steps because the file has
    /// no per-frame positions.
    pub positions_synthetic: bool,
    /// Remarks on how the file was read, copied into the series warnings.
    pub notes: Vec<String>,
}

/// One 2-D frame of an instance.
#[derive(Debug, Clone)]
pub(crate) struct FrameHeader {
    pub index: u32,
    pub position: Option<[f64; 3]>,
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing as stored: [between rows, between columns].
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    pub rescale: Option<Rescale>,
    /// Values of [`SPLIT_KEYS`], in order.
    pub keys: [Option<String>; SPLIT_KEYS.len()],
}

/// Reads the header of `path`: `Ok(instance)` for an image, `Err(reason)` for anything
/// discovery should skip (not DICOM, not an image, unreadable).
pub(crate) fn read_instance(path: &Path) -> Result<Instance, String> {
    match open::sniff_file(path).map_err(|e| format!("cannot read: {e}"))? {
        open::Sniff::NotDicom => {
            return Err(
                "not a DICOM file (no DICM magic, and no data set at the start)".to_string(),
            )
        }
        open::Sniff::Part10 | open::Sniff::BareDataSet => {}
    }
    let opened = open::open(path, Extent::Header)?;
    let ts = open::ts_uid(&opened.obj);
    let media_class = opened
        .obj
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let obj: &InMemDicomObject = &opened.obj;
    let mut inst = instance_from_object(path, obj, &media_class)?;
    inst.transfer_syntax = ts;
    inst.notes.extend(opened.notes);
    Ok(inst)
}

/// Builds an [`Instance`] from a data set read up to its pixel data.
pub(crate) fn instance_from_object(
    path: &Path,
    obj: &InMemDicomObject,
    media_class: &str,
) -> Result<Instance, String> {
    let sop_class = string(obj, tags::SOP_CLASS_UID).unwrap_or_else(|| media_class.to_string());
    if media_class == uids::MEDIA_STORAGE_DIRECTORY_STORAGE
        || obj.get(tags::DIRECTORY_RECORD_SEQUENCE).is_some()
    {
        return Err("DICOMDIR (media directory), not an image".to_string());
    }
    if sop_class == uids::SEGMENTATION_STORAGE
        || string(obj, tags::MODALITY).as_deref() == Some("SEG")
    {
        return Err("DICOM Segmentation (SEG) object, not an image series".to_string());
    }
    let rows = uint(obj, tags::ROWS);
    let columns = uint(obj, tags::COLUMNS);
    let (rows, columns) = match (rows, columns) {
        (Some(r), Some(c)) if r > 0 && c > 0 => (r, c),
        _ => {
            return Err(format!(
                "no image (no Rows/Columns): {}",
                sop_class_name(&sop_class)
            ))
        }
    };
    let mut notes = Vec::new();
    let pixel = pixel_format(obj, rows, columns)?;
    let n_frames = number_of_frames(obj)?;
    let series_uid = string(obj, tags::SERIES_INSTANCE_UID).unwrap_or_else(|| {
        notes.push("no SeriesInstanceUID".to_string());
        String::new()
    });

    let image_type = strings(obj, tags::IMAGE_TYPE);
    let file_keys = classic_keys(obj, path, image_type.as_deref());
    let frames = if let Some(per_frame) = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
    {
        let shared = obj
            .get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|items| items.first());
        if per_frame.len() != n_frames {
            notes.push(format!(
                "NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {} items; using {}",
                per_frame.len(),
                per_frame.len().min(n_frames)
            ));
        }
        per_frame
            .iter()
            .take(n_frames)
            .enumerate()
            .map(|(f, item)| enhanced_frame(obj, item, shared, f as u32, &file_keys))
            .collect()
    } else {
        classic_frames(obj, n_frames, &file_keys)
    };
    let positions_synthetic = n_frames > 1
        && obj
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .is_none()
        && obj.get(tags::GRID_FRAME_OFFSET_VECTOR).is_none();

    if let Some(scaling) = float(obj, tags::DOSE_GRID_SCALING) {
        notes.push(format!(
            "RT Dose values are stored units: multiply by DoseGridScaling {scaling} for Gy"
        ));
    }
    if has_philips_private_scaling(obj) {
        notes.push(
            "Philips private scale slope (2005,100E) ignored: values use the DICOM rescale \
             (RescaleSlope/Intercept, Pixel Value Transformation)"
                .to_string(),
        );
    }

    let (mosaic, mosaic_normal) = if image_type
        .as_deref()
        .is_some_and(|t| t.iter().any(|v| v == "MOSAIC"))
    {
        mosaic_info(obj, rows, columns, &mut notes)
    } else {
        (None, None)
    };

    Ok(Instance {
        path: path.to_path_buf(),
        transfer_syntax: String::new(),
        series_uid,
        series_number: int(obj, tags::SERIES_NUMBER),
        description: string(obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
        modality: string(obj, tags::MODALITY).unwrap_or_default(),
        patient_id: string(obj, tags::PATIENT_ID).unwrap_or_default(),
        study_uid: string(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        sop_instance_uid: string(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        sop_class_uid: sop_class,
        instance_number: int(obj, tags::INSTANCE_NUMBER),
        pixel,
        frames,
        mosaic,
        mosaic_normal,
        gantry_tilt: float(obj, tags::GANTRY_DETECTOR_TILT),
        positions_synthetic,
        notes,
    })
}

fn pixel_format(obj: &InMemDicomObject, rows: u32, columns: u32) -> Result<PixelFormat, String> {
    let sample = if obj.get(tags::FLOAT_PIXEL_DATA).is_some() {
        SampleKind::Float32
    } else if obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some() {
        SampleKind::Float64
    } else {
        SampleKind::Integer
    };
    let bits_allocated = uint(obj, tags::BITS_ALLOCATED).unwrap_or(match sample {
        SampleKind::Integer => 0,
        SampleKind::Float32 => 32,
        SampleKind::Float64 => 64,
    });
    if bits_allocated == 0 {
        return Err("no BitsAllocated".to_string());
    }
    let bits_stored = uint(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
    let high_bit = uint(obj, tags::HIGH_BIT).unwrap_or(bits_stored.saturating_sub(1));
    let to_u16 = |v: u32, what: &str| {
        u16::try_from(v).map_err(|_| format!("{what} {v} is out of range (at most 65535)"))
    };
    Ok(PixelFormat {
        rows: to_u16(rows, "Rows")?,
        columns: to_u16(columns, "Columns")?,
        samples_per_pixel: to_u16(
            uint(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
            "SamplesPerPixel",
        )?,
        bits_allocated: to_u16(bits_allocated, "BitsAllocated")?,
        bits_stored: to_u16(bits_stored, "BitsStored")?,
        high_bit: to_u16(high_bit, "HighBit")?,
        signed: uint(obj, tags::PIXEL_REPRESENTATION) == Some(1),
        photometric: string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
        sample,
    })
}

fn number_of_frames(obj: &InMemDicomObject) -> Result<usize, String> {
    let Some(elem) = obj.get(tags::NUMBER_OF_FRAMES) else {
        return Ok(1);
    };
    let text = elem
        .to_str()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if text.is_empty() {
        return Ok(1);
    }
    match text.parse::<i64>() {
        Ok(n) if n >= 1 && (n as u64) <= MAX_FRAMES as u64 => Ok(n as usize),
        Ok(0) => Ok(1),
        _ => Err(format!(
            "NumberOfFrames (0028,0008) is '{text}', not a frame count between 1 and {MAX_FRAMES}"
        )),
    }
}

/// Split keys that come from the top level (classic images, and fallbacks for enhanced).
fn classic_keys(
    obj: &InMemDicomObject,
    path: &Path,
    image_type: Option<&[String]>,
) -> [Option<String>; SPLIT_KEYS.len()] {
    [
        string(obj, tags::ACQUISITION_NUMBER),
        string(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        string(obj, tags::ECHO_NUMBERS).or_else(|| string(obj, tags::ECHO_TIME)),
        image_type.map(|t| t.join("\\")),
        None,
        None,
        string(obj, tags::TRIGGER_TIME),
        Some(path.display().to_string()),
    ]
}

fn classic_frames(
    obj: &InMemDicomObject,
    n_frames: usize,
    file_keys: &[Option<String>; SPLIT_KEYS.len()],
) -> Vec<FrameHeader> {
    let position = vec3(obj, tags::IMAGE_POSITION_PATIENT);
    let orientation = vec6(obj, tags::IMAGE_ORIENTATION_PATIENT);
    let pixel_spacing =
        vec2(obj, tags::PIXEL_SPACING).or_else(|| vec2(obj, tags::IMAGER_PIXEL_SPACING));
    let slice_thickness = float(obj, tags::SLICE_THICKNESS);
    let spacing_between_slices = float(obj, tags::SPACING_BETWEEN_SLICES);
    let rescale = rescale(obj);
    let mut keys = file_keys.clone();
    keys[5] = rescale.map(|r| format!("{}/{}", r.slope, r.intercept));
    // Frames of a classic multi-frame image: RT Dose gives offsets along the normal
    // (GridFrameOffsetVector, relative to ImagePositionPatient); others are stacked at
    // SpacingBetweenSlices (or SliceThickness, or 1 mm) along the normal.
    let offsets: Vec<f64> = match floats(obj, tags::GRID_FRAME_OFFSET_VECTOR) {
        // PS3.3 C.8.8.3.2: relative to ImagePositionPatient when the first offset is 0,
        // otherwise positions along the normal themselves.
        Some(v) if v.len() == n_frames && v[0] == 0.0 => v,
        Some(v) if v.len() == n_frames => match (position, orientation) {
            (Some(p), Some(o)) => {
                let base = crate::volume::dot(p, super::assemble::normal_of(&o));
                v.iter().map(|z| z - base).collect()
            }
            _ => v,
        },
        _ => {
            let step = spacing_between_slices
                .or(slice_thickness)
                .filter(|s| *s > 0.0)
                .unwrap_or(1.0);
            (0..n_frames).map(|f| f as f64 * step).collect()
        }
    };
    (0..n_frames)
        .map(|f| {
            let pos = match (position, orientation) {
                (Some(p), Some(o)) if n_frames > 1 => {
                    let n = super::assemble::normal_of(&o);
                    Some([
                        p[0] + offsets[f] * n[0],
                        p[1] + offsets[f] * n[1],
                        p[2] + offsets[f] * n[2],
                    ])
                }
                (p, _) => p,
            };
            FrameHeader {
                index: f as u32,
                position: pos,
                orientation,
                pixel_spacing,
                slice_thickness,
                spacing_between_slices,
                rescale,
                keys: keys.clone(),
            }
        })
        .collect()
}

/// One frame of an enhanced image: each functional group macro is looked up in the frame's
/// PerFrameFunctionalGroupsSequence item first, then in the shared item, then (for
/// pixel measures and rescale) at the top level.
fn enhanced_frame(
    obj: &InMemDicomObject,
    per_frame: &InMemDicomObject,
    shared: Option<&InMemDicomObject>,
    index: u32,
    file_keys: &[Option<String>; SPLIT_KEYS.len()],
) -> FrameHeader {
    let group = |seq: Tag| -> Option<&InMemDicomObject> {
        first_item(per_frame, seq).or_else(|| shared.and_then(|s| first_item(s, seq)))
    };
    let position = group(tags::PLANE_POSITION_SEQUENCE)
        .and_then(|g| vec3(g, tags::IMAGE_POSITION_PATIENT))
        .or_else(|| vec3(obj, tags::IMAGE_POSITION_PATIENT));
    let orientation = group(tags::PLANE_ORIENTATION_SEQUENCE)
        .and_then(|g| vec6(g, tags::IMAGE_ORIENTATION_PATIENT))
        .or_else(|| vec6(obj, tags::IMAGE_ORIENTATION_PATIENT));
    let measures = group(tags::PIXEL_MEASURES_SEQUENCE);
    let pixel_spacing = measures
        .and_then(|g| vec2(g, tags::PIXEL_SPACING))
        .or_else(|| vec2(obj, tags::PIXEL_SPACING));
    let slice_thickness = measures
        .and_then(|g| float(g, tags::SLICE_THICKNESS))
        .or_else(|| float(obj, tags::SLICE_THICKNESS));
    let spacing_between_slices = measures
        .and_then(|g| float(g, tags::SPACING_BETWEEN_SLICES))
        .or_else(|| float(obj, tags::SPACING_BETWEEN_SLICES));
    let rescale = group(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
        .and_then(rescale)
        .or_else(|| rescale(obj));
    let content = group(tags::FRAME_CONTENT_SEQUENCE);
    let frame_type = group(tags::MR_IMAGE_FRAME_TYPE_SEQUENCE)
        .or_else(|| group(tags::CT_IMAGE_FRAME_TYPE_SEQUENCE))
        .and_then(|g| strings(g, tags::FRAME_TYPE))
        .map(|t| t.join("\\"));
    let echo = group(tags::MR_ECHO_SEQUENCE).and_then(|g| string(g, tags::EFFECTIVE_ECHO_TIME));
    let mut keys = file_keys.clone();
    if let Some(c) = content {
        keys[0] = string(c, tags::FRAME_ACQUISITION_NUMBER).or(keys[0].take());
        keys[1] = string(c, tags::TEMPORAL_POSITION_INDEX).or(keys[1].take());
        keys[4] = string(c, tags::STACK_ID);
    }
    keys[2] = echo.or(keys[2].take());
    keys[3] = frame_type.or(keys[3].take());
    keys[5] = rescale.map(|r| format!("{}/{}", r.slope, r.intercept));
    FrameHeader {
        index,
        position,
        orientation,
        pixel_spacing,
        slice_thickness,
        spacing_between_slices,
        rescale,
        keys,
    }
}

/// Reads the mosaic layout from the CSA image header (or the Siemens MR header).
fn mosaic_info(
    obj: &InMemDicomObject,
    rows: u32,
    columns: u32,
    notes: &mut Vec<String>,
) -> (Option<Mosaic>, Option<[f64; 3]>) {
    let csa_tags = obj
        .private_element(0x0029, "SIEMENS CSA HEADER", 0x10)
        .ok()
        .and_then(|e| e.value().to_bytes().ok().and_then(|b| csa::parse(&b)));
    let from_csa = csa_tags
        .as_deref()
        .and_then(|t| csa::numbers(t, "NumberOfImagesInMosaic"))
        .and_then(|v| v.first().copied());
    let from_mr_header = obj
        .private_element(0x0019, "SIEMENS MR HEADER", 0x0A)
        .ok()
        .and_then(|e| e.to_int::<i64>().ok())
        .map(|n| n as f64);
    let normal = csa_tags
        .as_deref()
        .and_then(|t| csa::numbers(t, "SliceNormalVector"))
        .and_then(|v| <[f64; 3]>::try_from(v.as_slice()).ok())
        .filter(|v| super::assemble::norm(*v) > 0.5);
    let Some(n) = from_csa
        .or(from_mr_header)
        .filter(|n| *n >= 1.0 && n.fract() == 0.0)
    else {
        notes.push(
            "Siemens MOSAIC not de-mosaiced (NumberOfImagesInMosaic not found): read as one 2-D image"
                .to_string(),
        );
        return (None, None);
    };
    let tiles = n as usize;
    let per_row = (tiles as f64).sqrt().ceil() as usize;
    if per_row == 0
        || !(rows as usize).is_multiple_of(per_row)
        || !(columns as usize).is_multiple_of(per_row)
    {
        notes.push(format!(
            "Siemens MOSAIC not de-mosaiced: {tiles} tiles do not divide a {columns}x{rows} image"
        ));
        return (None, None);
    }
    (
        Some(Mosaic {
            tiles,
            per_row,
            tile_rows: rows as usize / per_row,
            tile_columns: columns as usize / per_row,
        }),
        normal,
    )
}

fn has_philips_private_scaling(obj: &InMemDicomObject) -> bool {
    let top = obj
        .private_element(0x2005, "Philips MR Imaging DD 001", 0x0E)
        .is_ok();
    let per_frame = || {
        obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|items| items.first())
            .and_then(|item| {
                item.private_element(0x2005, "Philips MR Imaging DD 005", 0x0F)
                    .ok()
                    .and_then(|e| e.items())
                    .and_then(|items| items.first())
                    .map(|p| {
                        p.private_element(0x2005, "Philips MR Imaging DD 001", 0x0E)
                            .is_ok()
                    })
            })
            .unwrap_or(false)
    };
    top || per_frame()
}

/// Names of the non-image SOP classes met in practice (the full dictionary sits behind a
/// `dicom-dictionary-std` feature segkit does not enable).
const NON_IMAGE_SOP_CLASSES: [(&str, &str); 17] = [
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT Plan"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "RT Ion Plan"),
    ("1.2.840.10008.5.1.4.1.1.481.4", "RT Beams Treatment Record"),
    ("1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR"),
    ("1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR"),
    ("1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive 3D SR"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "Key Object Selection"),
    (
        "1.2.840.10008.5.1.4.1.1.11.1",
        "Grayscale Softcopy Presentation State",
    ),
    ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF"),
    ("1.2.840.10008.5.1.4.1.1.9.1.1", "12-lead ECG Waveform"),
    ("1.2.840.10008.5.1.4.1.1.9.1.2", "General ECG Waveform"),
    ("1.2.840.10008.5.1.4.1.1.66", "Raw Data"),
    ("1.2.840.10008.5.1.4.1.1.66.1", "Spatial Registration"),
    ("1.2.840.10008.5.1.4.1.1.66.5", "Surface Segmentation"),
    (
        "1.2.840.10008.5.1.4.1.1.66.3",
        "Deformable Spatial Registration",
    ),
];

/// The SOP class's name when it is a known non-image class, else its UID.
pub(crate) fn sop_class_name(uid: &str) -> String {
    match NON_IMAGE_SOP_CLASSES.iter().find(|(u, _)| *u == uid) {
        Some((_, name)) => (*name).to_string(),
        None if uid.is_empty() => "no SOP Class UID".to_string(),
        None => format!("SOP class {uid}"),
    }
}

fn rescale(obj: &InMemDicomObject) -> Option<Rescale> {
    let slope = float(obj, tags::RESCALE_SLOPE);
    let intercept = float(obj, tags::RESCALE_INTERCEPT);
    if slope.is_none() && intercept.is_none() {
        return None;
    }
    let slope = slope.filter(|s| *s != 0.0).unwrap_or(1.0);
    Some(Rescale {
        slope,
        intercept: intercept.unwrap_or(0.0),
    })
}

// --- element access: `None` for absent, empty or malformed values ---

fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.get(seq).and_then(|e| e.items()).and_then(|i| i.first())
}

pub(crate) fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.get(tag)?;
    // Text read as bytes (VR UN in some files) comes back as numbers from `to_str`.
    let s = match elem.value().primitive() {
        Some(PrimitiveValue::U8(bytes)) => {
            std::borrow::Cow::Owned(String::from_utf8_lossy(bytes).into_owned())
        }
        _ => elem.to_str().ok()?,
    };
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn strings(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<String>> {
    let s = string(obj, tag)?;
    Some(s.split('\\').map(|v| v.trim().to_string()).collect())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let elem = obj.get(tag)?;
    elem.to_int::<i64>().ok().or_else(|| {
        elem.to_float64()
            .ok()
            .filter(|f| f.fract() == 0.0)
            .map(|f| f as i64)
    })
}

fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    int(obj, tag).and_then(|v| u32::try_from(v).ok())
}

fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    obj.get(tag)?.to_float64().ok().filter(|v| v.is_finite())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

fn vec2(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 2]> {
    floats(obj, tag)
        .and_then(|v| <[f64; 2]>::try_from(v.as_slice()).ok())
        .filter(|v| v[0] > 0.0 && v[1] > 0.0)
}

fn vec3(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 3]> {
    floats(obj, tag).and_then(|v| <[f64; 3]>::try_from(v.as_slice()).ok())
}

fn vec6(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 6]> {
    floats(obj, tag).and_then(|v| <[f64; 6]>::try_from(v.as_slice()).ok())
}

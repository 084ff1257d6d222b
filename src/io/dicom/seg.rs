//! Writing DICOM Segmentation objects: DICOM PS3.3 A.51 (Segmentation IOD), C.8.20
//! (Segmentation Series and Segmentation Image modules), C.7.6.16 (Multi-frame Functional
//! Groups) and C.7.6.17 (Multi-frame Dimension), binary segmentation type, so segments
//! drawn in Slicer or computed by segkit can go back to a PACS beside the images they
//! were drawn on.
//!
//! ```no_run
//! use segkit::io::dicom::{SegWriteOptions, SegmentAlgorithmType};
//! # fn main() -> segkit::Result<()> {
//! let seg = segkit::io::nrrd::read_segmentation("lungs.seg.nrrd".as_ref())?;
//! SegWriteOptions::new()
//!     .series_description("Lungs")
//!     .algorithm_type(SegmentAlgorithmType::Semiautomatic)
//!     .write("lungs.dcm".as_ref(), &seg, "ct/".as_ref())?;
//! # Ok(()) }
//! ```
//!
//! # What is written
//! One Segmentation Storage instance (SOP class 1.2.840.10008.5.1.4.1.1.66.4), Explicit VR
//! Little Endian, in a new series (new SeriesInstanceUID and SOPInstanceUID, `2.25.` UIDs
//! from 128 random bits). Patient, General Study and Frame of Reference attributes are
//! copied from the reference series (the images the segmentation was drawn on), which is
//! also listed, every instance, in ReferencedSeriesSequence.
//!
//! - **Segments**: one SegmentSequence item per segment, numbered 1, 2, ... in display
//!   order. SegmentLabel is the segment's name (cut to 64 characters, the LO limit). The
//!   category, type, type modifier, anatomic region and its modifier come from Slicer's
//!   `TerminologyEntry` tag when the segment has one; otherwise category and type are
//!   both "Tissue" (SCT 85756007), what Slicer gives a new segment.
//!   RecommendedDisplayCIELabValue is the segment's colour, sRGB to CIELab (D65 white, as
//!   dcmqi converts) scaled to 0..65535 as PS3.3 C.10.7.1.1 says.
//! - **Frames**: one frame per (segment, slice) holding at least one voxel of the segment,
//!   segment by segment and, within a segment, in slice order along the slice normal. This
//!   is what highdicom (`omit_empty_frames=True`, its default) and dcmqi (`skip empty
//!   slices`) write. When no segment has any voxel, every slice of every segment is
//!   written (empty), as highdicom does, since a SEG needs at least one frame. An empty
//!   segment is still described in SegmentSequence but has no frame.
//! - **Pixels**: 1 bit per pixel, LSB first, frames concatenated with no padding between
//!   them (a frame of 3x3 pixels takes 9 bits), the whole padded with zero bits to an
//!   even number of bytes (PS3.5 8.1.1).
//! - **Geometry**: shared PixelMeasures (PixelSpacing, SliceThickness and
//!   SpacingBetweenSlices = the segmentation's slice step along the normal) and
//!   PlaneOrientation; per frame its ImagePositionPatient, its segment
//!   (SegmentIdentification) and DimensionIndexValues (segment number, then the rank of
//!   its position among the positions written, dcmqi's and highdicom's dimensions).
//!
//! # Geometry rules
//! The segmentation must lie in the reference series' planes: its i and j axes must be
//! the reference's row and column directions (either may be reversed, or the two swapped:
//! the voxels are then reordered, as a NIfTI label map on the DICOM grid needs) with the
//! same pixel spacing. Anything else is refused with an error naming both geometries:
//! resampling is not done here. Along k the slices may be anywhere.
//!
//! When the segmentation's pixels sit on the reference's pixel grid (an in-plane offset of
//! whole pixels, and every segment voxel inside the reference's Rows x Columns), frames
//! have the reference's size and each frame on a reference slice references that slice's
//! SOP instance (DerivationImageSequence / SourceImageSequence, SpatialLocationsPreserved
//! YES), which viewers such as OHIF rely on. Otherwise frames take the segmentation's own
//! in-plane size and position and reference no source image.

use super::open::{self, Extent};
use super::Series;
use crate::error::{Error, Result};
use crate::volume::{cross, dot, norm, Geometry, Segmentation};
use dicom::core::smallvec::SmallVec;
use dicom::core::{DataElement, PrimitiveValue, Tag, VR};
use dicom::dictionary_std::{tags, uids};
use dicom::object::meta::FileMetaTableBuilder;
use dicom::object::InMemDicomObject;
use ndarray::{ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;
use std::path::Path;

/// Largest angle (radians, as its sine) between a segmentation axis and the reference
/// axis it must follow: 1e-4 moves a pixel 512 columns away by 0.05 mm at 1 mm spacing.
const AXIS_TOLERANCE: f64 = 1e-4;
/// Largest relative difference between the segmentation's and the reference's pixel
/// spacing.
const SPACING_TOLERANCE: f64 = 1e-4;
/// Largest difference (in pixels) between an in-plane offset and a whole number for the
/// segmentation to count as lying on the reference's pixel grid.
const GRID_TOLERANCE_PIXELS: f64 = 1e-3;
/// Largest distance (mm) along the normal between a segmentation slice and a reference
/// slice for the frame to reference that slice (and at most 5 % of the slice step).
const PLANE_TOLERANCE_MM: f64 = 0.01;
/// The largest Pixel Data an uncompressed DICOM element can hold (an even 32-bit length).
const MAX_PIXEL_DATA_BYTES: u64 = u32::MAX as u64 - 1;

/// Segmentation Storage.
const SEGMENTATION_STORAGE: &str = uids::SEGMENTATION_STORAGE;

/// Who or what made the segments (SegmentAlgorithmType, PS3.3 C.8.20.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentAlgorithmType {
    /// Drawn by hand (the default: a Segment Editor user).
    #[default]
    Manual,
    /// Computed with a user's guidance (Grow from seeds, thresholds with an edit).
    Semiautomatic,
    /// Computed without a user (a model, a batch pipeline).
    Automatic,
}

impl SegmentAlgorithmType {
    /// The DICOM defined term: `MANUAL`, `SEMIAUTOMATIC` or `AUTOMATIC`.
    pub fn as_dicom(self) -> &'static str {
        match self {
            SegmentAlgorithmType::Manual => "MANUAL",
            SegmentAlgorithmType::Semiautomatic => "SEMIAUTOMATIC",
            SegmentAlgorithmType::Automatic => "AUTOMATIC",
        }
    }
}

impl std::str::FromStr for SegmentAlgorithmType {
    type Err = String;

    /// `manual`, `semiautomatic` or `automatic`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "MANUAL" => Ok(SegmentAlgorithmType::Manual),
            "SEMIAUTOMATIC" => Ok(SegmentAlgorithmType::Semiautomatic),
            "AUTOMATIC" => Ok(SegmentAlgorithmType::Automatic),
            _ => Err(format!(
                "segment algorithm type '{s}' is not one of manual, semiautomatic, automatic"
            )),
        }
    }
}

/// Options of a DICOM SEG write, builder style, ending in [`SegWriteOptions::write`]:
/// `SegWriteOptions::new().series_description("Lungs").write(path, &seg, reference)`.
#[derive(Debug, Clone)]
pub struct SegWriteOptions {
    series_description: String,
    series_number: i64,
    content_label: String,
    content_creator: String,
    algorithm_type: SegmentAlgorithmType,
    algorithm_name: String,
    manufacturer: String,
    software_version: String,
    reference_series: Option<String>,
}

impl Default for SegWriteOptions {
    fn default() -> Self {
        SegWriteOptions {
            series_description: "Segmentation".to_string(),
            series_number: 300,
            content_label: "SEGMENTATION".to_string(),
            content_creator: String::new(),
            algorithm_type: SegmentAlgorithmType::default(),
            algorithm_name: "segkit".to_string(),
            manufacturer: "segkit".to_string(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            reference_series: None,
        }
    }
}

impl SegWriteOptions {
    /// Defaults: SeriesDescription "Segmentation", SeriesNumber 300, ContentLabel
    /// "SEGMENTATION", no content creator, algorithm MANUAL named "segkit", manufacturer
    /// "segkit" with segkit's version, and a reference folder holding one series.
    pub fn new() -> Self {
        Self::default()
    }

    /// SeriesDescription (cut to 64 characters).
    pub fn series_description(mut self, description: impl Into<String>) -> Self {
        self.series_description = description.into();
        self
    }

    /// SeriesNumber of the new series.
    pub fn series_number(mut self, number: i64) -> Self {
        self.series_number = number;
        self
    }

    /// ContentLabel: upper-cased, characters other than A-Z, 0-9, space and `_` become
    /// `_`, cut to 16 characters (the CS rules).
    pub fn content_label(mut self, label: impl Into<String>) -> Self {
        self.content_label = label.into();
        self
    }

    /// ContentCreatorName, a person name (`Family^Given`); empty by default.
    pub fn content_creator(mut self, name: impl Into<String>) -> Self {
        self.content_creator = name.into();
        self
    }

    /// SegmentAlgorithmType of every segment.
    pub fn algorithm_type(mut self, kind: SegmentAlgorithmType) -> Self {
        self.algorithm_type = kind;
        self
    }

    /// SegmentAlgorithmName, written when the algorithm type is not MANUAL.
    pub fn algorithm_name(mut self, name: impl Into<String>) -> Self {
        self.algorithm_name = name.into();
        self
    }

    /// Manufacturer and ManufacturerModelName.
    pub fn manufacturer(mut self, name: impl Into<String>) -> Self {
        self.manufacturer = name.into();
        self
    }

    /// SoftwareVersions.
    pub fn software_version(mut self, version: impl Into<String>) -> Self {
        self.software_version = version.into();
        self
    }

    /// Which series of the reference folder the segmentation was drawn on, when it holds
    /// several: its number in `segkit info`'s listing or its SeriesInstanceUID.
    pub fn reference_series(mut self, series: Option<String>) -> Self {
        self.reference_series = series;
        self
    }

    /// Writes `seg` as a DICOM SEG to `path` (atomically), referencing the image series
    /// found at `reference` (a DICOM folder or file). See the module docs for what is
    /// written and for the geometry the segmentation must have.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the segmentation has no segment, when it does not
    /// lie in the reference's planes (the message names both geometries) or when the
    /// reference has no FrameOfReferenceUID; the reference's read errors; I/O errors.
    pub fn write(&self, path: &Path, seg: &Segmentation, reference: &Path) -> Result<()> {
        let scan = super::scan(&[reference.to_path_buf()])?;
        let series = crate::io::select_series(reference, &scan, self.reference_series.as_deref())?;
        let first = series.files.first().ok_or_else(|| {
            Error::InvalidArgument(format!("{}: the series has no frame", reference.display()))
        })?;
        let header = open::open(&first.path, Extent::Header)
            .map_err(|reason| Error::format(&first.path, "DICOM", reason))?;
        let obj = self.build(seg, series, &header.obj, reference)?;
        let file = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
            .map_err(|e| Error::format(path, "DICOM", e.to_string()))?;
        crate::io::write_atomic(path, |w| {
            file.write_all(w)
                .map_err(|e| Error::format(path, "DICOM", format!("cannot write: {e}")))
        })
    }

    /// The SEG data set of `seg` on `series`, whose first file's header is `source`.
    fn build(
        &self,
        seg: &Segmentation,
        series: &Series,
        source: &InMemDicomObject,
        reference: &Path,
    ) -> Result<InMemDicomObject> {
        check_segmentation(seg)?;
        let frame_of_reference = text(source, tags::FRAME_OF_REFERENCE_UID).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: the reference series has no FrameOfReferenceUID: a DICOM SEG cannot be placed on it",
                reference.display()
            ))
        })?;
        let aligned = align(seg, series).map_err(|why| {
            Error::InvalidArgument(format!(
                "{}: the segmentation cannot be written on this series: {why}; segmentation: {}; \
                 reference series: {} (resampling to the reference lattice is not supported)",
                reference.display(),
                describe(&seg.geometry, seg.size_ijk()),
                describe(&series.geometry, series.size_ijk),
            ))
        })?;
        let layers: Vec<ArrayView3<u16>> = seg.layers.iter().map(|l| aligned.view(l)).collect();
        let extents = segment_extents(seg, &layers);
        let plan = plan_frames(&aligned, series, &extents);
        let pixel_data = pack_frames(seg, &layers, &plan)?;

        let now = Timestamp::now();
        let mut obj = InMemDicomObject::new_empty();
        put_str(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
        put_str(&mut obj, tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE);
        put_str(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &new_uid()?);
        put_str(&mut obj, tags::INSTANCE_CREATION_DATE, VR::DA, &now.date);
        put_str(&mut obj, tags::INSTANCE_CREATION_TIME, VR::TM, &now.time);
        put_str(&mut obj, tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000");

        // Patient, General Study, Frame of Reference: the source's, as they are.
        for (tag, vr) in COPIED {
            match source.get(tag) {
                Some(e) => {
                    obj.put(e.clone());
                }
                None => put_str(&mut obj, tag, vr, ""),
            }
        }
        put_str(
            &mut obj,
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &frame_of_reference,
        );

        // Segmentation Series, General Equipment, Enhanced General Equipment.
        put_str(&mut obj, tags::MODALITY, VR::CS, "SEG");
        put_str(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, &new_uid()?);
        put_str(
            &mut obj,
            tags::SERIES_NUMBER,
            VR::IS,
            &self.series_number.to_string(),
        );
        put_str(&mut obj, tags::SERIES_DATE, VR::DA, &now.date);
        put_str(&mut obj, tags::SERIES_TIME, VR::TM, &now.time);
        put_str(
            &mut obj,
            tags::SERIES_DESCRIPTION,
            VR::LO,
            &cut(&self.series_description, 64),
        );
        put_str(
            &mut obj,
            tags::MANUFACTURER,
            VR::LO,
            &cut(&self.manufacturer, 64),
        );
        put_str(
            &mut obj,
            tags::MANUFACTURER_MODEL_NAME,
            VR::LO,
            &cut(&self.manufacturer, 64),
        );
        put_str(&mut obj, tags::DEVICE_SERIAL_NUMBER, VR::LO, "1");
        put_str(
            &mut obj,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &cut(&self.software_version, 64),
        );

        // General Image, Segmentation Image, Content Identification.
        put_str(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
        put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &now.date);
        put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &now.time);
        put_strs(
            &mut obj,
            tags::IMAGE_TYPE,
            VR::CS,
            &["DERIVED".into(), "PRIMARY".into()],
        );
        put_str(
            &mut obj,
            tags::CONTENT_LABEL,
            VR::CS,
            &content_label(&self.content_label),
        );
        put_str(&mut obj, tags::CONTENT_DESCRIPTION, VR::LO, "");
        put_str(
            &mut obj,
            tags::CONTENT_CREATOR_NAME,
            VR::PN,
            &self.content_creator,
        );
        put_str(&mut obj, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
        put_str(
            &mut obj,
            tags::SEGMENTS_OVERLAP,
            VR::CS,
            if seg.layers.len() == 1 {
                "NO"
            } else {
                "UNDEFINED"
            },
        );
        put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        put_seq(&mut obj, tags::SEGMENT_SEQUENCE, self.segment_items(seg));

        // Image Pixel.
        put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, 1);
        put_str(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        put_u16(&mut obj, tags::ROWS, plan.rows as u16);
        put_u16(&mut obj, tags::COLUMNS, plan.columns as u16);
        put_u16(&mut obj, tags::BITS_ALLOCATED, 1);
        put_u16(&mut obj, tags::BITS_STORED, 1);
        put_u16(&mut obj, tags::HIGH_BIT, 0);
        put_u16(&mut obj, tags::PIXEL_REPRESENTATION, 0);
        put_str(
            &mut obj,
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            &plan.frames.len().to_string(),
        );

        // Multi-frame Dimension: segment, then position.
        let dimension_uid = new_uid()?;
        put_seq(
            &mut obj,
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![item(|o| {
                put_str(o, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid)
            })],
        );
        let dimension = |pointer: Tag, group: Tag, label: &str| {
            item(|o| {
                put_str(o, tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dimension_uid);
                put(o, tags::DIMENSION_INDEX_POINTER, VR::AT, pointer);
                put(o, tags::FUNCTIONAL_GROUP_POINTER, VR::AT, group);
                put_str(o, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
            })
        };
        put_seq(
            &mut obj,
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dimension(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "ReferencedSegmentNumber",
                ),
                dimension(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "ImagePositionPatient",
                ),
            ],
        );

        // Multi-frame Functional Groups.
        put_seq(
            &mut obj,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared_groups(&plan)],
        );
        put_seq(
            &mut obj,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            plan.frames.iter().map(per_frame_groups).collect(),
        );

        // Common Instance Reference: every instance of the source series.
        put_seq(
            &mut obj,
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![item(|o| {
                put_str(
                    o,
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    &series.series_instance_uid,
                );
                put_seq(
                    o,
                    tags::REFERENCED_INSTANCE_SEQUENCE,
                    referenced_instances(series),
                );
            })],
        );

        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(pixel_data),
        ));
        Ok(obj)
    }

    /// One SegmentSequence item per segment, numbered from 1 in display order.
    fn segment_items(&self, seg: &Segmentation) -> Vec<InMemDicomObject> {
        seg.segments
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let terms = s
                    .tags
                    .iter()
                    .find(|(k, _)| k == "TerminologyEntry")
                    .and_then(|(_, v)| Terminology::parse(v))
                    .unwrap_or_else(Terminology::tissue);
                item(|o| {
                    put_u16(o, tags::SEGMENT_NUMBER, segment_number(n));
                    let label = if s.name.trim().is_empty() {
                        &s.id
                    } else {
                        &s.name
                    };
                    put_str(o, tags::SEGMENT_LABEL, VR::LO, &cut(label, 64));
                    put_str(
                        o,
                        tags::SEGMENT_ALGORITHM_TYPE,
                        VR::CS,
                        self.algorithm_type.as_dicom(),
                    );
                    if self.algorithm_type != SegmentAlgorithmType::Manual {
                        put_str(
                            o,
                            tags::SEGMENT_ALGORITHM_NAME,
                            VR::LO,
                            &cut(&self.algorithm_name, 64),
                        );
                    }
                    put_seq(
                        o,
                        tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                        vec![terms.category.item()],
                    );
                    let mut kind = terms.property_type.item();
                    if let Some(m) = &terms.type_modifier {
                        put_seq(
                            &mut kind,
                            tags::SEGMENTED_PROPERTY_TYPE_MODIFIER_CODE_SEQUENCE,
                            vec![m.item()],
                        );
                    }
                    put_seq(o, tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![kind]);
                    if let Some(region) = &terms.region {
                        let mut r = region.item();
                        if let Some(m) = &terms.region_modifier {
                            put_seq(
                                &mut r,
                                tags::ANATOMIC_REGION_MODIFIER_SEQUENCE,
                                vec![m.item()],
                            );
                        }
                        put_seq(o, tags::ANATOMIC_REGION_SEQUENCE, vec![r]);
                    }
                    put(
                        o,
                        tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
                        VR::US,
                        srgb_to_dicom_lab(s.color),
                    );
                })
            })
            .collect()
    }
}

/// Writes `seg` as a DICOM SEG referencing the image series at `reference` (a DICOM
/// folder or file), with default options; see [`SegWriteOptions::write`].
pub fn write_dicom_seg(path: &Path, seg: &Segmentation, reference: &Path) -> Result<()> {
    SegWriteOptions::new().write(path, seg, reference)
}

/// [`write_dicom_seg`] with options.
pub fn write_dicom_seg_with_options(
    path: &Path,
    seg: &Segmentation,
    reference: &Path,
    options: &SegWriteOptions,
) -> Result<()> {
    options.write(path, seg, reference)
}

/// Patient, General Study and Frame of Reference attributes copied from the source
/// (written empty when the source lacks them: all are type 2 but FrameOfReferenceUID,
/// which is required and checked separately).
const COPIED: [(Tag, VR); 12] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_INSTANCE_UID, VR::UI),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::FRAME_OF_REFERENCE_UID, VR::UI),
    (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
];

fn segment_number(index: usize) -> u16 {
    (index + 1) as u16
}

/// At least one segment, at most 65535, every layer of one shape and every segment in a
/// layer that exists.
fn check_segmentation(seg: &Segmentation) -> Result<()> {
    if seg.segments.is_empty() {
        return Err(Error::InvalidArgument(
            "the segmentation has no segment: a DICOM SEG needs at least one".to_string(),
        ));
    }
    if seg.segments.len() > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "the segmentation has {} segments; a DICOM SEG holds at most 65535",
            seg.segments.len()
        )));
    }
    let shape = seg.layers.first().map(|l| l.dim());
    if shape.is_none() || seg.layers.iter().any(|l| Some(l.dim()) != shape) {
        return Err(Error::InvalidArgument(
            "the segmentation's layers are missing or of different sizes".to_string(),
        ));
    }
    if let Some(s) = seg.segments.iter().find(|s| s.layer >= seg.layers.len()) {
        return Err(Error::InvalidArgument(format!(
            "segment '{}' is in layer {}, but there are {} layers",
            s.name,
            s.layer,
            seg.layers.len()
        )));
    }
    let [ni, nj, nk] = seg.size_ijk();
    if ni == 0 || nj == 0 || nk == 0 || ni > u16::MAX as usize || nj > u16::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "the segmentation is {ni} x {nj} x {nk} voxels: a DICOM frame is 1 to 65535 pixels wide and high"
        )));
    }
    Ok(())
}

// --- geometry: the segmentation on the reference's planes ---

/// The segmentation's axes re-expressed on the reference's: which of its (i, j) runs
/// along the reference's rows, which of them are reversed, and the lattice after that
/// reordering.
#[derive(Debug, Clone)]
struct Aligned {
    /// The segmentation's j runs along the reference's i (and its i along j).
    swap: bool,
    /// Reversed along the reference's i (after the swap).
    flip_i: bool,
    /// Reversed along the reference's j (after the swap).
    flip_j: bool,
    /// The lattice of the reordered voxels: i and j along the reference's.
    geometry: Geometry,
    /// Sizes (i, j, k) of the reordered voxels.
    size_ijk: [usize; 3],
}

impl Aligned {
    /// A layer's voxels, `[k][j][i]`, with i and j along the reference's axes.
    fn view<'a>(&self, layer: &'a ndarray::Array3<u16>) -> ArrayView3<'a, u16> {
        let mut v = layer.view();
        if self.swap {
            v.swap_axes(1, 2);
        }
        if self.flip_i {
            v.invert_axis(Axis(2));
        }
        if self.flip_j {
            v.invert_axis(Axis(1));
        }
        v
    }
}

/// How the segmentation's lattice lies on the reference's planes, or why it does not.
fn align(seg: &Segmentation, series: &Series) -> Result<Aligned, String> {
    let reference = &series.geometry;
    let size = seg.size_ijk();
    let (ri, rj) = (reference.axis(0), reference.axis(1));
    let parallel = |a: [f64; 3], b: [f64; 3]| norm(cross(a, b)) <= AXIS_TOLERANCE;
    let (swap, a, b) = if parallel(seg.geometry.axis(0), ri) && parallel(seg.geometry.axis(1), rj) {
        (false, 0, 1)
    } else if parallel(seg.geometry.axis(1), ri) && parallel(seg.geometry.axis(0), rj) {
        (true, 1, 0)
    } else {
        return Err(
            "its i and j axes are not the reference's row and column directions \
                    (a different plane orientation)"
                .to_string(),
        );
    };
    let same = |s: f64, r: f64| (s - r).abs() <= SPACING_TOLERANCE * r;
    if !same(seg.geometry.spacing[a], reference.spacing[0])
        || !same(seg.geometry.spacing[b], reference.spacing[1])
    {
        return Err(format!(
            "its pixel spacing along the reference's rows and columns is {} x {} mm, the reference's {} x {} mm",
            seg.geometry.spacing[a], seg.geometry.spacing[b], reference.spacing[0], reference.spacing[1]
        ));
    }
    let normal = reference.slice_normal();
    let k_axis = seg.geometry.axis(2);
    if dot(k_axis, normal).abs() < 1e-3 {
        return Err("its k axis lies in the reference's planes".to_string());
    }
    let flip_i = dot(seg.geometry.axis(a), ri) < 0.0;
    let flip_j = dot(seg.geometry.axis(b), rj) < 0.0;
    let mut corner = [0.0; 3];
    if flip_i {
        corner[a] = (size[a] - 1) as f64;
    }
    if flip_j {
        corner[b] = (size[b] - 1) as f64;
    }
    let sign = |flip: bool, v: [f64; 3]| if flip { v.map(|x| -x) } else { v };
    let geometry = Geometry::from_axes(
        seg.geometry.index_to_lps(corner),
        [
            seg.geometry.spacing[a],
            seg.geometry.spacing[b],
            seg.geometry.spacing[2],
        ],
        [
            sign(flip_i, seg.geometry.axis(a)),
            sign(flip_j, seg.geometry.axis(b)),
            k_axis,
        ],
    );
    Ok(Aligned {
        swap,
        flip_i,
        flip_j,
        geometry,
        size_ijk: [size[a], size[b], size[2]],
    })
}

/// `origin (x, y, z) mm, spacing (i, j, k) mm, i axis (..), j axis (..), N x N x N voxels`.
fn describe(g: &Geometry, size_ijk: [usize; 3]) -> String {
    let v = |a: [f64; 3]| format!("({:.6}, {:.6}, {:.6})", a[0], a[1], a[2]);
    format!(
        "{} x {} x {} voxels, origin {} mm, spacing ({}, {}, {}) mm, i axis {}, j axis {}, k axis {} (LPS)",
        size_ijk[0],
        size_ijk[1],
        size_ijk[2],
        v(g.origin),
        g.spacing[0],
        g.spacing[1],
        g.spacing[2],
        v(g.axis(0)),
        v(g.axis(1)),
        v(g.axis(2))
    )
}

/// Where a segment has voxels in one slice: inclusive (i, j) bounds on the aligned lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent2 {
    i: [usize; 2],
    j: [usize; 2],
}

/// For every segment, the extent of its voxels in each slice (`None`: no voxel).
fn segment_extents(seg: &Segmentation, layers: &[ArrayView3<u16>]) -> Vec<Vec<Option<Extent2>>> {
    seg.segments
        .iter()
        .map(|s| {
            let layer = &layers[s.layer];
            layer
                .axis_iter(Axis(0))
                .into_par_iter()
                .map(|slice| slice_extent(slice, s.label_value))
                .collect()
        })
        .collect()
}

fn slice_extent(slice: ArrayView2<u16>, label: u16) -> Option<Extent2> {
    let mut e: Option<Extent2> = None;
    for (j, row) in slice.outer_iter().enumerate() {
        let mut first = None;
        let mut last = 0;
        for (i, &v) in row.iter().enumerate() {
            if v == label {
                first.get_or_insert(i);
                last = i;
            }
        }
        if let Some(first) = first {
            e = Some(match e {
                None => Extent2 {
                    i: [first, last],
                    j: [j, j],
                },
                Some(e) => Extent2 {
                    i: [e.i[0].min(first), e.i[1].max(last)],
                    j: [e.j[0], j],
                },
            });
        }
    }
    e
}

/// The frames to write and the grid they are on.
#[derive(Debug, Clone)]
struct FramePlan {
    rows: usize,
    columns: usize,
    /// Offset (columns, rows) of aligned voxel (0, 0) in a frame: non-zero only on the
    /// reference's grid.
    offset: [usize; 2],
    /// Frame row and column directions (ImageOrientationPatient).
    orientation: [[f64; 3]; 2],
    /// PixelSpacing: between rows, between columns.
    pixel_spacing: [f64; 2],
    /// The slice step along the normal (SliceThickness, SpacingBetweenSlices).
    slice_step_mm: f64,
    frames: Vec<PlannedFrame>,
}

#[derive(Debug, Clone)]
struct PlannedFrame {
    /// Index in `Segmentation::segments`.
    segment: usize,
    /// Slice of the aligned lattice.
    k: usize,
    /// Rank of the frame's position among the positions written (1-based).
    position_index: u32,
    position: [f64; 3],
    /// The reference frame this one lies on, when frames are on the reference's grid.
    source: Option<SourceFrame>,
}

#[derive(Debug, Clone)]
struct SourceFrame {
    sop_class_uid: String,
    sop_instance_uid: String,
    /// 1-based frame number, for multi-frame sources.
    frame_number: Option<u32>,
}

/// Chooses the grid (the reference's when the voxels sit on it, else the segmentation's
/// own) and lists the frames: per segment, the slices holding its voxels (all slices of
/// every segment when none holds any), in order along the normal.
fn plan_frames(aligned: &Aligned, series: &Series, extents: &[Vec<Option<Extent2>>]) -> FramePlan {
    let g = &aligned.geometry;
    let [ni, nj, nk] = aligned.size_ijk;
    let reference = &series.geometry;
    let normal = reference.slice_normal();
    let (ui, uj) = (reference.axis(0), reference.axis(1));
    let (si, sj) = (reference.spacing[0], reference.spacing[1]);
    let slice_step_mm = dot(g.step(2), normal).abs();
    let plane_tol = PLANE_TOLERANCE_MM.min(0.05 * slice_step_mm.max(1e-6));

    let all_empty = extents.iter().all(|e| e.iter().all(Option::is_none));
    let written: Vec<bool> = (0..nk)
        .map(|k| all_empty || extents.iter().any(|e| e[k].is_some()))
        .collect();

    // The reference frame on each aligned slice, and the slice's in-plane offset on the
    // reference's pixel grid.
    // (A mosaic's tiles are not SOP instances of their own: nothing to reference.)
    let corner = |k: usize| g.index_to_lps([0.0, 0.0, k as f64]);
    let matches: Vec<Option<usize>> = (0..nk)
        .map(|k| {
            let p = corner(k);
            if series.mosaic.is_some() {
                return None;
            }
            series
                .files
                .iter()
                .position(|f| dot(sub(p, f.position), normal).abs() <= plane_tol)
        })
        .collect();
    let offsets: Vec<Option<[i64; 2]>> = (0..nk)
        .map(|k| {
            let base = match matches[k] {
                Some(f) => series.files[f].position,
                None => series.files.first().map(|f| f.position)?,
            };
            let d = sub(corner(k), base);
            let (oi, oj) = (dot(d, ui) / si, dot(d, uj) / sj);
            let whole = |x: f64| (x - x.round()).abs() <= GRID_TOLERANCE_PIXELS;
            (whole(oi) && whole(oj)).then(|| [oi.round() as i64, oj.round() as i64])
        })
        .collect();
    let (columns, rows) = (series.size_ijk[0], series.size_ijk[1]);
    let used: Vec<usize> = (0..nk).filter(|&k| written[k]).collect();
    let common = used.first().and_then(|&k| offsets[k]);
    let fits = |o: [i64; 2]| {
        extents.iter().flatten().flatten().all(|e| {
            let inside = |lo: usize, hi: usize, off: i64, n: usize| {
                lo as i64 + off >= 0 && hi as i64 + off < n as i64
            };
            inside(e.i[0], e.i[1], o[0], columns) && inside(e.j[0], e.j[1], o[1], rows)
        })
    };
    let on_reference = common
        .filter(|&o| used.iter().all(|&k| offsets[k] == Some(o)))
        .filter(|&o| fits(o));

    // Frames on the reference's grid sit at the reference frame's own position.
    let position = |k: usize| match (on_reference, matches[k]) {
        (Some(_), Some(f)) => series.files[f].position,
        (Some(o), None) => {
            let p = corner(k);
            let shift = [o[0] as f64 * si, o[1] as f64 * sj];
            std::array::from_fn(|r| p[r] - shift[0] * ui[r] - shift[1] * uj[r])
        }
        (None, _) => corner(k),
    };
    let mut order: Vec<usize> = used.clone();
    order.sort_by(|&a, &b| dot(position(a), normal).total_cmp(&dot(position(b), normal)));
    let mut rank = vec![0u32; nk];
    for (r, &k) in order.iter().enumerate() {
        rank[k] = r as u32 + 1;
    }
    let frame_counts = frame_counts(series);
    let source = |k: usize| -> Option<SourceFrame> {
        on_reference?;
        let f = &series.files[matches[k]?];
        (!f.sop_instance_uid.is_empty()).then(|| SourceFrame {
            sop_class_uid: f.sop_class_uid.clone(),
            sop_instance_uid: f.sop_instance_uid.clone(),
            frame_number: (frame_counts
                .get(f.sop_instance_uid.as_str())
                .copied()
                .unwrap_or(1)
                > 1)
            .then_some(f.frame + 1),
        })
    };
    let mut frames = Vec::new();
    for (s, per_slice) in extents.iter().enumerate() {
        for &k in &order {
            if all_empty || per_slice[k].is_some() {
                frames.push(PlannedFrame {
                    segment: s,
                    k,
                    position_index: rank[k],
                    position: position(k),
                    source: source(k),
                });
            }
        }
    }
    match on_reference {
        Some(o) => FramePlan {
            rows,
            columns,
            offset: [o[0] as usize, o[1] as usize],
            orientation: [ui, uj],
            pixel_spacing: [sj, si],
            slice_step_mm,
            frames,
        },
        None => FramePlan {
            rows: nj,
            columns: ni,
            offset: [0, 0],
            orientation: [g.axis(0), g.axis(1)],
            pixel_spacing: [g.spacing[1], g.spacing[0]],
            slice_step_mm,
            frames,
        },
    }
}

/// How many frames of the series each SOP instance holds (multi-frame sources need
/// ReferencedFrameNumber).
fn frame_counts(series: &Series) -> std::collections::HashMap<&str, usize> {
    let mut counts = std::collections::HashMap::new();
    for f in &series.files {
        *counts.entry(f.sop_instance_uid.as_str()).or_insert(0) += 1;
    }
    counts
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

// --- pixel data ---

/// Bits set one by one into a zeroed buffer, LSB first (PS3.5 8.1.1: the first pixel is
/// bit 0 of the first byte), finished to an even number of bytes.
#[derive(Debug)]
struct BitPacker {
    bytes: Vec<u8>,
}

impl BitPacker {
    /// A buffer for `bits` bits, all 0.
    fn new(bits: u64) -> Self {
        BitPacker {
            bytes: vec![0; bits.div_ceil(8) as usize],
        }
    }

    fn set(&mut self, bit: u64) {
        self.bytes[(bit / 8) as usize] |= 1 << (bit % 8);
    }

    /// The bytes, with one zero byte added when their number is odd.
    fn finish(mut self) -> Vec<u8> {
        if self.bytes.len() % 2 == 1 {
            self.bytes.push(0);
        }
        self.bytes
    }
}

/// The Pixel Data of the planned frames: frame after frame, `rows x columns` bits each.
fn pack_frames(
    seg: &Segmentation,
    layers: &[ArrayView3<u16>],
    plan: &FramePlan,
) -> Result<Vec<u8>> {
    let per_frame = (plan.rows * plan.columns) as u64;
    let bits = per_frame * plan.frames.len() as u64;
    if bits.div_ceil(8) > MAX_PIXEL_DATA_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{} frames of {} x {} pixels need {} bytes of pixel data, more than a DICOM element holds ({} bytes)",
            plan.frames.len(),
            plan.columns,
            plan.rows,
            bits.div_ceil(8),
            MAX_PIXEL_DATA_BYTES
        )));
    }
    let mut packer = BitPacker::new(bits);
    let [oi, oj] = plan.offset;
    for (n, f) in plan.frames.iter().enumerate() {
        let s = &seg.segments[f.segment];
        let slice = layers[s.layer].index_axis(Axis(0), f.k);
        let base = n as u64 * per_frame;
        for (j, row) in slice.outer_iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                if v == s.label_value && v != 0 {
                    let (r, c) = (j + oj, i + oi);
                    // Voxels outside the frame cannot occur: the plan checked the extents.
                    if r < plan.rows && c < plan.columns {
                        packer.set(base + (r * plan.columns + c) as u64);
                    }
                }
            }
        }
    }
    Ok(packer.finish())
}

// --- functional groups ---

fn shared_groups(plan: &FramePlan) -> InMemDicomObject {
    item(|o| {
        put_seq(
            o,
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item(|m| {
                put_strs(m, tags::PIXEL_SPACING, VR::DS, &plan.pixel_spacing.map(ds));
                put_str(m, tags::SLICE_THICKNESS, VR::DS, &ds(plan.slice_step_mm));
                put_str(
                    m,
                    tags::SPACING_BETWEEN_SLICES,
                    VR::DS,
                    &ds(plan.slice_step_mm),
                );
            })],
        );
        let [r, c] = plan.orientation;
        put_seq(
            o,
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![item(|p| {
                put_strs(
                    p,
                    tags::IMAGE_ORIENTATION_PATIENT,
                    VR::DS,
                    &[r[0], r[1], r[2], c[0], c[1], c[2]].map(ds),
                )
            })],
        );
    })
}

fn per_frame_groups(f: &PlannedFrame) -> InMemDicomObject {
    item(|o| {
        if let Some(src) = &f.source {
            put_seq(
                o,
                tags::DERIVATION_IMAGE_SEQUENCE,
                vec![item(|d| {
                    put_seq(
                        d,
                        tags::DERIVATION_CODE_SEQUENCE,
                        vec![Code::new("DCM", "113076", "Segmentation").item()],
                    );
                    put_seq(
                        d,
                        tags::SOURCE_IMAGE_SEQUENCE,
                        vec![item(|s| {
                            put_str(
                                s,
                                tags::REFERENCED_SOP_CLASS_UID,
                                VR::UI,
                                &src.sop_class_uid,
                            );
                            put_str(
                                s,
                                tags::REFERENCED_SOP_INSTANCE_UID,
                                VR::UI,
                                &src.sop_instance_uid,
                            );
                            if let Some(n) = src.frame_number {
                                put_str(s, tags::REFERENCED_FRAME_NUMBER, VR::IS, &n.to_string());
                            }
                            put_seq(
                                s,
                                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                                vec![Code::new(
                                    "DCM",
                                    "121322",
                                    "Source image for image processing operation",
                                )
                                .item()],
                            );
                            put_str(s, tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES");
                        })],
                    );
                })],
            );
        }
        put_seq(
            o,
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item(|c| {
                put(
                    c,
                    tags::DIMENSION_INDEX_VALUES,
                    VR::UL,
                    PrimitiveValue::U32(SmallVec::from_vec(vec![
                        segment_number(f.segment) as u32,
                        f.position_index,
                    ])),
                )
            })],
        );
        put_seq(
            o,
            tags::PLANE_POSITION_SEQUENCE,
            vec![item(|p| {
                put_strs(p, tags::IMAGE_POSITION_PATIENT, VR::DS, &f.position.map(ds))
            })],
        );
        put_seq(
            o,
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![item(|s| {
                put_u16(
                    s,
                    tags::REFERENCED_SEGMENT_NUMBER,
                    segment_number(f.segment),
                )
            })],
        );
    })
}

/// ReferencedInstanceSequence items: each SOP instance of the series once, in slice order.
fn referenced_instances(series: &Series) -> Vec<InMemDicomObject> {
    let mut seen = std::collections::HashSet::new();
    series
        .files
        .iter()
        .filter(|f| !f.sop_instance_uid.is_empty() && seen.insert(f.sop_instance_uid.as_str()))
        .map(|f| {
            item(|o| {
                put_str(o, tags::REFERENCED_SOP_CLASS_UID, VR::UI, &f.sop_class_uid);
                put_str(
                    o,
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &f.sop_instance_uid,
                );
            })
        })
        .collect()
}

// --- terminology and colour ---

/// A coded concept (PS3.3 Table 8.8-1, the Code Sequence Macro).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Code {
    scheme: String,
    value: String,
    meaning: String,
}

impl Code {
    fn new(scheme: &str, value: &str, meaning: &str) -> Self {
        Code {
            scheme: scheme.to_string(),
            value: value.to_string(),
            meaning: meaning.to_string(),
        }
    }

    /// `SCT^39607008^Lung`; `None` when a part is empty (Slicer writes `^^` for "none").
    fn parse(text: &str) -> Option<Code> {
        let mut parts = text.splitn(3, '^').map(str::trim);
        let (scheme, value, meaning) = (parts.next()?, parts.next()?, parts.next()?);
        (!scheme.is_empty() && !value.is_empty() && !meaning.is_empty())
            .then(|| Code::new(scheme, value, meaning))
    }

    /// A sequence item: CodeValue (LongCodeValue past 16 characters), the scheme and the
    /// meaning (cut to 64 characters).
    fn item(&self) -> InMemDicomObject {
        item(|o| {
            if self.value.len() <= 16 {
                put_str(o, tags::CODE_VALUE, VR::SH, &self.value);
            } else {
                put_str(o, tags::LONG_CODE_VALUE, VR::UC, &self.value);
            }
            put_str(o, tags::CODING_SCHEME_DESIGNATOR, VR::SH, &self.scheme);
            put_str(o, tags::CODE_MEANING, VR::LO, &cut(&self.meaning, 64));
        })
    }
}

/// What a segment is, from Slicer's `TerminologyEntry` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Terminology {
    category: Code,
    property_type: Code,
    type_modifier: Option<Code>,
    region: Option<Code>,
    region_modifier: Option<Code>,
}

impl Terminology {
    /// Parses Slicer's terminology entry: seven `~`-separated fields, terminology context
    /// name, category, type, type modifier, anatomic context name, anatomic region, region
    /// modifier, each code as `scheme^value^meaning`:
    /// `Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^39607008^Lung~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^`.
    /// `None` without a category and a type.
    fn parse(entry: &str) -> Option<Terminology> {
        let fields: Vec<&str> = entry.split('~').collect();
        let code = |n: usize| fields.get(n).and_then(|f| Code::parse(f));
        Some(Terminology {
            category: code(1)?,
            property_type: code(2)?,
            type_modifier: code(3),
            region: code(5),
            region_modifier: code(6),
        })
    }

    /// Slicer's terminology of a new segment: category and type "Tissue".
    fn tissue() -> Terminology {
        let tissue = Code::new("SCT", "85756007", "Tissue");
        Terminology {
            category: tissue.clone(),
            property_type: tissue,
            type_modifier: None,
            region: None,
            region_modifier: None,
        }
    }
}

/// An sRGB colour (components 0..=1) as DICOM's scaled CIELab (PS3.3 C.10.7.1.1):
/// L* 0..100 to 0..65535, a* and b* -128..127 to 0..65535. sRGB is linearised, turned to
/// XYZ and then to CIELab with the D65 white point, as dcmqi does.
fn srgb_to_dicom_lab(rgb: [f64; 3]) -> [u16; 3] {
    let linear = rgb.map(|c| {
        let c = c.clamp(0.0, 1.0);
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    });
    let [r, g, b] = linear;
    let xyz = [
        0.4124564 * r + 0.3575761 * g + 0.1804375 * b,
        0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
        0.0193339 * r + 0.1191920 * g + 0.9503041 * b,
    ];
    const WHITE: [f64; 3] = [0.95047, 1.0, 1.08883];
    let f = |t: f64| {
        const EPSILON: f64 = 216.0 / 24389.0;
        const KAPPA: f64 = 24389.0 / 27.0;
        if t > EPSILON {
            t.cbrt()
        } else {
            (KAPPA * t + 16.0) / 116.0
        }
    };
    let [fx, fy, fz] = [
        f(xyz[0] / WHITE[0]),
        f(xyz[1] / WHITE[1]),
        f(xyz[2] / WHITE[2]),
    ];
    let (l, a, b) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
    let scale =
        |v: f64, lo: f64, hi: f64| ((v.clamp(lo, hi) - lo) * 65535.0 / (hi - lo)).round() as u16;
    [
        scale(l, 0.0, 100.0),
        scale(a, -128.0, 127.0),
        scale(b, -128.0, 127.0),
    ]
}

// --- values ---

/// A new UID `2.25.<a random 128-bit UUID, version 4, in decimal>` (ITU-T X.667, PS3.5 B.2).
fn new_uid() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::io(
            "random number source",
            std::io::Error::other(format!("no random bytes for a UID: {e}")),
        )
    })?;
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    Ok(format!("2.25.{}", u128::from_be_bytes(bytes)))
}

/// A decimal string of at most 16 characters (the DS limit), as precise as fits.
fn ds(v: f64) -> String {
    let trim = |s: String| -> String {
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s == "-0" {
            "0".to_string()
        } else {
            s
        }
    };
    let shortest = trim(format!("{v}"));
    if shortest.len() <= 16 {
        return shortest;
    }
    (0..=15)
        .rev()
        .map(|p| trim(format!("{v:.p$}")))
        .find(|s| s.len() <= 16)
        .unwrap_or_else(|| format!("{v:.6e}"))
}

/// `text` cut to at most `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A ContentLabel: CS characters (A-Z, 0-9, space, `_`), at most 16.
fn content_label(label: &str) -> String {
    let s: String = label
        .trim()
        .to_ascii_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    if s.trim().is_empty() {
        "SEGMENTATION".to_string()
    } else {
        s
    }
}

/// The trimmed text of an element, `None` when absent or empty.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    super::header::string(obj, tag)
}

/// Date (`YYYYMMDD`) and time (`HHMMSS`) in UTC.
struct Timestamp {
    date: String,
    time: String,
}

impl Timestamp {
    fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        Timestamp {
            date: format!("{y:04}{m:02}{d:02}"),
            time: format!("{:02}{:02}{:02}", rest / 3600, rest / 60 % 60, rest % 60),
        }
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (400-year eras of 146097
/// days, years counted from March so the leap day ends the year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// --- data set building ---

fn item(fill: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    fill(&mut o);
    o
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

fn put_str(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    if value.is_empty() {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
    } else {
        put(obj, tag, vr, value);
    }
}

fn put_strs(obj: &mut InMemDicomObject, tag: Tag, vr: VR, values: &[String]) {
    put(
        obj,
        tag,
        vr,
        PrimitiveValue::Strs(values.iter().cloned().collect()),
    );
}

fn put_u16(obj: &mut InMemDicomObject, tag: Tag, value: u16) {
    put(obj, tag, VR::US, value);
}

fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(
        tag,
        VR::SQ,
        dicom::core::value::DataSetSequence::from(items),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{temp_dir, Slice};
    use super::*;
    use crate::volume::Segment;
    use dicom::object::open_file;
    use ndarray::Array3;

    /// Three 3x2 slices at z = 0, 2, 4 mm (PixelSpacing 0.5 between rows, 0.25 between
    /// columns): 6 pixels per frame, not a multiple of 8.
    fn reference(dir: &Path) {
        for (n, z) in [0.0, 2.0, 4.0].into_iter().enumerate() {
            Slice {
                instance_number: n as i64 + 1,
                position: [0.0, 0.0, z],
                ..Slice::default()
            }
            .write(dir, &format!("ct{n}.dcm"));
        }
    }

    fn lattice() -> Geometry {
        Geometry {
            origin: [0.0; 3],
            spacing: [0.25, 0.5, 2.0],
            ..Geometry::default()
        }
    }

    /// Label 1 at (k0: j0 i0, j1 i2) and all of k2; label 2 at k1 j0 i1.
    fn labels() -> Array3<u16> {
        let mut a = Array3::<u16>::zeros((3, 2, 3));
        a[[0, 0, 0]] = 1;
        a[[0, 1, 2]] = 1;
        a.index_axis_mut(Axis(0), 2).fill(1);
        a[[1, 0, 1]] = 2;
        a
    }

    fn segmentation(layer: Array3<u16>, geometry: Geometry, labels: &[u16]) -> Segmentation {
        Segmentation {
            geometry,
            layers: vec![layer],
            segments: labels
                .iter()
                .map(|&l| Segment::new(format!("s{l}"), format!("segment {l}"), l, 0))
                .collect(),
            extent_offset: [0; 3],
            extra_fields: Vec::new(),
        }
    }

    /// Writes `seg` on the synthetic reference and reads the file back.
    fn write_and_read(seg: &Segmentation) -> dicom::object::DefaultDicomObject {
        let dir = temp_dir();
        reference(dir.path());
        let out = dir.path().join("out").join("seg.dcm");
        std::fs::create_dir(out.parent().unwrap()).unwrap();
        write_dicom_seg(&out, seg, dir.path()).unwrap();
        open_file(&out).unwrap()
    }

    fn pixel_bytes(obj: &InMemDicomObject) -> Vec<u8> {
        obj.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .to_vec()
    }

    /// Per frame: (ReferencedSegmentNumber, DimensionIndexValues, z of the position, the
    /// referenced SOP instance).
    fn frames(obj: &InMemDicomObject) -> Vec<(u16, Vec<u32>, f64, Option<String>)> {
        let group = |item: &InMemDicomObject, seq: Tag| -> InMemDicomObject {
            item.element(seq).unwrap().items().unwrap()[0].clone()
        };
        obj.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .iter()
            .map(|f| {
                let segment = group(f, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
                    .element(tags::REFERENCED_SEGMENT_NUMBER)
                    .unwrap()
                    .to_int::<u16>()
                    .unwrap();
                let index = group(f, tags::FRAME_CONTENT_SEQUENCE)
                    .element(tags::DIMENSION_INDEX_VALUES)
                    .unwrap()
                    .to_multi_int::<u32>()
                    .unwrap();
                let z = group(f, tags::PLANE_POSITION_SEQUENCE)
                    .element(tags::IMAGE_POSITION_PATIENT)
                    .unwrap()
                    .to_multi_float64()
                    .unwrap()[2];
                let source = f.element(tags::DERIVATION_IMAGE_SEQUENCE).ok().map(|d| {
                    let d = &d.items().unwrap()[0];
                    group(d, tags::SOURCE_IMAGE_SEQUENCE)
                        .element(tags::REFERENCED_SOP_INSTANCE_UID)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .trim_end_matches('\0')
                        .to_string()
                });
                (segment, index, z, source)
            })
            .collect()
    }

    #[test]
    fn frames_of_six_pixels_are_packed_without_padding_between_them() {
        let obj = write_and_read(&segmentation(labels(), lattice(), &[1, 2]));
        // Frames: segment 1 at k0 (bits 0, 5), segment 1 at k2 (bits 6..=11), segment 2
        // at k1 (bit 12 + 1): 18 bits in 3 bytes, padded to 4.
        assert_eq!(pixel_bytes(&obj), vec![0b1110_0001, 0b0010_1111, 0, 0]);
        let f = frames(&obj);
        let summary: Vec<_> = f.iter().map(|(s, i, z, _)| (*s, i.clone(), *z)).collect();
        assert_eq!(
            summary,
            vec![
                (1, vec![1, 1], 0.0),
                (1, vec![1, 3], 4.0),
                (2, vec![2, 2], 2.0),
            ]
        );
        // Each frame references the CT slice it lies on (testutil: series UID + 1000 + n).
        let sources: Vec<_> = f.iter().map(|x| x.3.clone().unwrap()).collect();
        assert_eq!(sources, ["1.2.3.4.1001", "1.2.3.4.1003", "1.2.3.4.1002"]);
        assert_eq!(
            obj.element(tags::NUMBER_OF_FRAMES)
                .unwrap()
                .to_int::<u32>()
                .unwrap(),
            3
        );
        assert_eq!(
            obj.element(tags::BITS_ALLOCATED)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            1
        );
        assert_eq!(obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(), 2);
        assert_eq!(
            obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
            3
        );
        assert_eq!(
            obj.element(tags::FRAME_OF_REFERENCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            "1.2.3.100"
        );
        assert_eq!(
            obj.meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0'),
            SEGMENTATION_STORAGE
        );
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
    }

    #[test]
    fn an_empty_segment_is_described_but_has_no_frame() {
        let obj = write_and_read(&segmentation(labels(), lattice(), &[1, 2, 7]));
        let segments = obj
            .element(tags::SEGMENT_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(segments.len(), 3);
        assert_eq!(
            segments[2]
                .element(tags::SEGMENT_LABEL)
                .unwrap()
                .to_str()
                .unwrap(),
            "segment 7"
        );
        assert!(frames(&obj).iter().all(|f| f.0 != 3));
        assert_eq!(pixel_bytes(&obj).len(), 4);
    }

    #[test]
    fn an_all_empty_segmentation_writes_every_slice_empty() {
        let seg = segmentation(Array3::zeros((3, 2, 3)), lattice(), &[1]);
        let obj = write_and_read(&seg);
        let f = frames(&obj);
        assert_eq!(f.len(), 3);
        assert_eq!(
            f.iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
            vec![vec![1, 1], vec![1, 2], vec![1, 3]]
        );
        // 18 zero bits: 3 bytes, padded to 4.
        assert_eq!(pixel_bytes(&obj), vec![0; 4]);
    }

    #[test]
    fn reversed_and_swapped_axes_give_the_same_frames() {
        let straight = write_and_read(&segmentation(labels(), lattice(), &[1, 2]));
        // The same voxels stored with i reversed: voxel i = 0 is the reference's column 2.
        let mut reversed = labels();
        reversed.invert_axis(Axis(2));
        let flipped_geometry = Geometry::from_axes(
            [0.5, 0.0, 0.0],
            [0.25, 0.5, 2.0],
            [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        );
        let flipped = write_and_read(&segmentation(
            reversed.as_standard_layout().to_owned(),
            flipped_geometry,
            &[1, 2],
        ));
        assert_eq!(pixel_bytes(&flipped), pixel_bytes(&straight));
        // And with i and j swapped (j runs along the rows): the transposed array.
        let swapped = labels()
            .permuted_axes([0, 2, 1])
            .as_standard_layout()
            .to_owned();
        let swapped_geometry = Geometry::from_axes(
            [0.0; 3],
            [0.5, 0.25, 2.0],
            [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
        );
        let transposed = write_and_read(&segmentation(swapped, swapped_geometry, &[1, 2]));
        assert_eq!(pixel_bytes(&transposed), pixel_bytes(&straight));
    }

    #[test]
    fn a_crop_off_the_pixel_grid_keeps_its_own_frame_size_and_no_source() {
        // Two columns wide, starting half a pixel right of the reference's column 0.
        let mut a = Array3::<u16>::zeros((3, 2, 2));
        a[[1, 1, 1]] = 1;
        let g = Geometry {
            origin: [0.125, 0.0, 0.0],
            ..lattice()
        };
        let obj = write_and_read(&segmentation(a, g, &[1]));
        assert_eq!(
            obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
            2
        );
        let f = frames(&obj);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].3, None);
        // Pixel (row 1, column 1) of a 2x2 frame: bit 3.
        assert_eq!(pixel_bytes(&obj), vec![0b1000, 0]);
    }

    #[test]
    fn a_whole_pixel_crop_is_written_on_the_reference_grid() {
        // Columns 1..=2 of the reference only.
        let mut a = Array3::<u16>::zeros((3, 2, 2));
        a[[1, 1, 1]] = 1;
        let g = Geometry {
            origin: [0.25, 0.0, 0.0],
            ..lattice()
        };
        let obj = write_and_read(&segmentation(a, g, &[1]));
        assert_eq!(
            obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
            3
        );
        let f = frames(&obj);
        assert_eq!(f[0].3.as_deref(), Some("1.2.3.4.1002"));
        // Row 1, column 2 of a 3x2 frame: bit 5.
        assert_eq!(pixel_bytes(&obj), vec![0b10_0000, 0]);
    }

    #[test]
    fn a_lattice_with_another_spacing_or_orientation_is_refused_naming_both() {
        let dir = temp_dir();
        reference(dir.path());
        let out = dir.path().join("seg.dcm");
        let coarse = Geometry {
            spacing: [0.5, 0.5, 2.0],
            ..lattice()
        };
        let err = write_dicom_seg(&out, &segmentation(labels(), coarse, &[1]), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0.5 x 0.5 mm, the reference's 0.25 x 0.5 mm"),
            "{err}"
        );
        assert!(err.contains("segmentation: 3 x 2 x 3 voxels"), "{err}");
        assert!(err.contains("reference series: 3 x 2 x 3 voxels"), "{err}");
        let tilted = Geometry::from_axes(
            [0.0; 3],
            [0.25, 0.5, 2.0],
            [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]],
        );
        let err = write_dicom_seg(&out, &segmentation(labels(), tilted, &[1]), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("plane orientation"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn bit_packer_pads_to_an_even_number_of_bytes() {
        let mut p = BitPacker::new(9);
        p.set(8);
        assert_eq!(p.finish(), vec![0, 1]);
        let mut p = BitPacker::new(17);
        p.set(0);
        p.set(16);
        assert_eq!(p.finish(), vec![1, 0, 1, 0]);
        assert_eq!(BitPacker::new(16).finish(), vec![0, 0]);
    }

    #[test]
    fn slicer_terminology_gives_category_type_and_modifier() {
        let t = Terminology::parse(
            "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure\
             ~SCT^39607008^Lung~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^",
        )
        .unwrap();
        assert_eq!(
            t.category,
            Code::new("SCT", "123037004", "Anatomical Structure")
        );
        assert_eq!(t.property_type, Code::new("SCT", "39607008", "Lung"));
        assert_eq!(t.type_modifier, Some(Code::new("SCT", "24028007", "Right")));
        assert_eq!(t.region, None);
        assert!(Terminology::parse("context~^^~^^").is_none());
        assert!(Terminology::parse("").is_none());
    }

    #[test]
    fn colours_become_scaled_cielab() {
        assert_eq!(srgb_to_dicom_lab([1.0, 1.0, 1.0]), [65535, 32896, 32896]);
        assert_eq!(srgb_to_dicom_lab([0.0, 0.0, 0.0]), [0, 32896, 32896]);
        // Pure red: L* 53.24, a* 80.09, b* 67.20.
        let [l, a, b] = srgb_to_dicom_lab([1.0, 0.0, 0.0]);
        assert!((l as f64 * 100.0 / 65535.0 - 53.24).abs() < 0.01, "{l}");
        assert!(
            (a as f64 * 255.0 / 65535.0 - 128.0 - 80.09).abs() < 0.02,
            "{a}"
        );
        assert!(
            (b as f64 * 255.0 / 65535.0 - 128.0 - 67.20).abs() < 0.02,
            "{b}"
        );
    }

    #[test]
    fn values_follow_their_vr_limits() {
        assert_eq!(ds(-193.09599304199222), "-193.09599304199");
        assert_eq!(ds(0.810546875), "0.810546875");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(2.0), "2");
        assert!(ds(1e-20).len() <= 16);
        assert_eq!(content_label("lungs (v2)"), "LUNGS _V2_");
        assert_eq!(content_label(""), "SEGMENTATION");
        let uid = new_uid().unwrap();
        assert!(uid.starts_with("2.25.") && uid.len() <= 64, "{uid}");
        assert_ne!(uid, new_uid().unwrap());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}

//! Synthetic DICOM files for the unit tests: one slice per call, every attribute chosen.

use dicom::core::value::PrimitiveValue;
use dicom::core::{DataElement, Tag, VR};
use dicom::dictionary_std::{tags, uids};
use dicom::object::meta::FileMetaTableBuilder;
use dicom::object::InMemDicomObject;
use std::path::{Path, PathBuf};

/// The attributes of one synthetic slice.
#[derive(Debug, Clone)]
pub(crate) struct Slice {
    pub series_uid: String,
    pub series_number: i64,
    pub instance_number: i64,
    pub acquisition_number: Option<i64>,
    pub position: [f64; 3],
    pub orientation: [f64; 6],
    /// [between rows, between columns]
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: Option<f64>,
    pub rows: u16,
    pub columns: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub rescale: Option<(f64, f64)>,
    /// Raw stored words, row by row (bits above BitsStored included).
    pub words: Vec<u32>,
    pub transfer_syntax: &'static str,
    /// Store 16-bit pixel data as OW words (else as OB bytes).
    pub as_words: bool,
    /// Encapsulated pixel data: these fragments (one frame each) instead of `words`.
    pub fragments: Option<Vec<Vec<u8>>>,
}

impl Default for Slice {
    fn default() -> Self {
        Slice {
            series_uid: "1.2.3.4".into(),
            series_number: 1,
            instance_number: 1,
            acquisition_number: None,
            position: [0.0; 3],
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.25],
            slice_thickness: None,
            rows: 2,
            columns: 3,
            bits_allocated: 16,
            bits_stored: 16,
            high_bit: 15,
            signed: false,
            rescale: None,
            words: vec![0, 1, 2, 3, 4, 5],
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN,
            as_words: true,
            fragments: None,
        }
    }
}

fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v}"))
        .collect::<Vec<_>>()
        .join("\\")
}

impl Slice {
    /// Writes the slice to `dir/name` and returns the path.
    pub(crate) fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let sop_uid = format!("{}.{}", self.series_uid, self.instance_number + 1000);
        let mut elements = vec![
            DataElement::new(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
            DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.as_str()),
            DataElement::new(tags::MODALITY, VR::CS, "CT"),
            DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, "synthetic"),
            DataElement::new(tags::PATIENT_ID, VR::LO, "P1"),
            DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
            DataElement::new(tags::FRAME_OF_REFERENCE_UID, VR::UI, "1.2.3.100"),
            DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, self.series_uid.as_str()),
            DataElement::new(
                tags::SERIES_NUMBER,
                VR::IS,
                self.series_number.to_string().as_str(),
            ),
            DataElement::new(
                tags::INSTANCE_NUMBER,
                VR::IS,
                self.instance_number.to_string().as_str(),
            ),
            DataElement::new(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                ds(&self.position).as_str(),
            ),
            DataElement::new(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds(&self.orientation).as_str(),
            ),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(self.rows)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(self.columns)),
            DataElement::new(
                tags::PIXEL_SPACING,
                VR::DS,
                ds(&self.pixel_spacing).as_str(),
            ),
            DataElement::new(
                tags::BITS_ALLOCATED,
                VR::US,
                PrimitiveValue::from(self.bits_allocated),
            ),
            DataElement::new(
                tags::BITS_STORED,
                VR::US,
                PrimitiveValue::from(self.bits_stored),
            ),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(self.high_bit)),
            DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(self.signed as u16),
            ),
        ];
        if let Some(a) = self.acquisition_number {
            elements.push(DataElement::new(
                tags::ACQUISITION_NUMBER,
                VR::IS,
                a.to_string().as_str(),
            ));
        }
        if let Some(t) = self.slice_thickness {
            elements.push(DataElement::new(
                tags::SLICE_THICKNESS,
                VR::DS,
                ds(&[t]).as_str(),
            ));
        }
        if let Some((slope, intercept)) = self.rescale {
            elements.push(DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                ds(&[slope]).as_str(),
            ));
            elements.push(DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                ds(&[intercept]).as_str(),
            ));
        }
        elements.push(self.pixel_element());
        let obj = InMemDicomObject::from_element_iter(elements);
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(self.transfer_syntax)
                    .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid(sop_uid.as_str()),
            )
            .unwrap();
        let path = dir.join(name);
        file.write_to_file(&path).unwrap();
        path
    }

    fn pixel_element(&self) -> DataElement<InMemDicomObject> {
        if let Some(fragments) = &self.fragments {
            use dicom::core::value::{PixelFragmentSequence, Value};
            let sequence = PixelFragmentSequence::new(Vec::<u32>::new(), fragments.clone());
            return DataElement::new(Tag(0x7FE0, 0x0010), VR::OB, Value::PixelSequence(sequence));
        }
        let value = match (self.bits_allocated, self.as_words) {
            (8, _) => PrimitiveValue::U8(self.words.iter().map(|&w| w as u8).collect()),
            (16, true) => PrimitiveValue::U16(self.words.iter().map(|&w| w as u16).collect()),
            (16, false) => PrimitiveValue::U8(
                self.words
                    .iter()
                    .flat_map(|&w| (w as u16).to_le_bytes())
                    .collect(),
            ),
            _ => PrimitiveValue::U8(self.words.iter().flat_map(|&w| w.to_le_bytes()).collect()),
        };
        let vr = if self.bits_allocated == 8 {
            VR::OB
        } else {
            VR::OW
        };
        DataElement::new(Tag(0x7FE0, 0x0010), vr, value)
    }
}

/// A fresh temporary directory.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

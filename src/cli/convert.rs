//! `segkit convert INPUT OUTPUT`: any supported input to the format the output names, and
//! segmentations to DICOM SEG (`OUTPUT.dcm --reference DICOM_DIR`).

use super::progress::Bar;
use crate::error::{Error, Result};
use crate::io::dicom::{SegWriteOptions, SegmentAlgorithmType};
use crate::io::{self, Format, OpenOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// DICOM folder or file, .nrrd, .nhdr, .seg.nrrd, .nii or .nii.gz.
    input: PathBuf,
    /// Output file: .nrrd (volume in its own type), -label.nrrd (Slicer label map),
    /// .seg.nrrd (Slicer segmentation), .nii or .nii.gz.
    output: PathBuf,
    /// When a DICOM folder holds several series: the series number in `segkit info`'s
    /// listing (1, 2, ...) or its SeriesInstanceUID.
    #[arg(long)]
    series: Option<String>,
    /// Writing a DICOM SEG (OUTPUT.dcm): the DICOM folder or file of the image series the
    /// segmentation was drawn on. Patient, study and frame of reference come from it, and
    /// each frame references its source slice.
    #[arg(long, value_name = "DICOM_DIR")]
    reference: Option<PathBuf>,
    /// When the reference folder holds several series: its number in `segkit info`'s
    /// listing or its SeriesInstanceUID.
    #[arg(long, value_name = "N|UID", requires = "reference")]
    reference_series: Option<String>,
    /// DICOM SEG: SeriesDescription.
    #[arg(long, default_value = "Segmentation", requires = "reference")]
    series_description: String,
    /// DICOM SEG: SeriesNumber.
    #[arg(long, default_value_t = 300, requires = "reference")]
    series_number: i64,
    /// DICOM SEG: SegmentAlgorithmType of every segment: manual, semiautomatic or automatic.
    #[arg(long, default_value = "manual", requires = "reference")]
    algorithm_type: SegmentAlgorithmType,
    /// DICOM SEG: SegmentAlgorithmName (written unless the type is manual).
    #[arg(long, default_value = "segkit", requires = "reference")]
    algorithm_name: String,
    /// DICOM SEG: ContentCreatorName (Family^Given).
    #[arg(long, default_value = "", requires = "reference")]
    content_creator: String,
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let to_dicom = Format::from_path(&args.output)? == Format::Dicom;
    match (&args.reference, to_dicom) {
        (Some(reference), true) => return write_seg(args, reference),
        (None, true) => {
            return Err(Error::InvalidArgument(format!(
                "{}: writing a DICOM SEG needs the image series the segmentation was drawn on: \
                 add --reference DICOM_DIR (segkit writes no other DICOM objects)",
                args.output.display()
            )))
        }
        (Some(_), false) => {
            return Err(Error::InvalidArgument(format!(
                "--reference is for writing a DICOM SEG (an output named .dcm), not {}",
                args.output.display()
            )))
        }
        (None, false) => {}
    }
    if nrrd_to_nrrd(args)? {
        // A 3-D volume is normalised as Slicer writes volumes (LPS, space directions).
        // Any other NRRD (1-D, 2-D, DWI, vector fields) is copied with every header field
        // (kinds, measurement frame, key:=value); only the encoding becomes gzip.
        match io::nrrd::read_volume(&args.input) {
            Ok(v) => io::nrrd::write_volume(&args.output, &v)?,
            Err(crate::Error::Unsupported { .. }) => {
                let n = io::nrrd::read(&args.input)?;
                io::nrrd::write(&args.output, &n, &io::nrrd::WriteOptions::new())?;
            }
            Err(e) => return Err(e),
        }
        eprintln!("wrote {}", args.output.display());
        return Ok(());
    }
    let bar = Bar::new("reading");
    let update = |done, total| bar.update(done, total);
    let dataset = OpenOptions::new()
        .series(args.series.clone())
        .progress(&update)
        .open(&args.input);
    bar.finish();
    io::write(&args.output, dataset?, &args.input)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// `convert SEGMENTATION OUT.dcm --reference DICOM_DIR`: a .seg.nrrd as it is, a label map
/// (any volume of integer labels) as one segment per label value.
fn write_seg(args: &ConvertArgs, reference: &std::path::Path) -> Result<()> {
    if args.output.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: is a folder; name the DICOM SEG file to write (e.g. seg.dcm)",
            args.output.display()
        )));
    }
    let seg = OpenOptions::new()
        .series(args.series.clone())
        .open(&args.input)?
        .into_segmentation(&args.input)?;
    SegWriteOptions::new()
        .reference_series(args.reference_series.clone())
        .series_description(&args.series_description)
        .series_number(args.series_number)
        .algorithm_type(args.algorithm_type)
        .algorithm_name(&args.algorithm_name)
        .content_creator(&args.content_creator)
        .write(&args.output, &seg, reference)?;
    let n = seg.segments.len();
    eprintln!(
        "wrote {} (DICOM SEG, {n} segment{})",
        args.output.display(),
        if n == 1 { "" } else { "s" }
    );
    Ok(())
}

/// True when a plain NRRD is converted to a plain NRRD (not a label map or segmentation).
fn nrrd_to_nrrd(args: &ConvertArgs) -> Result<bool> {
    let is_label = |p: &std::path::Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        name.ends_with("-label.nrrd") || name.ends_with("_label.nrrd")
    };
    Ok(args.input.is_file()
        && Format::from_path(&args.input)? == Format::Nrrd
        && Format::from_path(&args.output)? == Format::Nrrd
        && !is_label(&args.output))
}

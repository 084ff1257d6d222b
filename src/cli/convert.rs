//! `segkit convert INPUT OUTPUT`: any supported input to the format the output names.

use super::progress::Bar;
use crate::error::Result;
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
}

pub fn run(args: &ConvertArgs) -> Result<()> {
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

//! `segkit convert INPUT OUTPUT`: any supported input to the format the output names.

use super::progress::Bar;
use crate::error::Result;
use crate::io::{self, OpenOptions};
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

//! `segkit lungs INPUT -o OUTPUT`: right and left lungs of a chest CT
//! ([`crate::auto::lungs`]), written as a label map (1 right, 2 left), NIfTI or a Slicer
//! segmentation with the lungs' names, colours and terminology.

use super::progress::Bar;
use crate::auto::lungs::{segment_lungs, LungOptions, Lungs};
use crate::effects::Control;
use crate::error::{Error, Result};
use crate::io::{self, Format, OpenOptions};
use crate::volume::AnyVolume;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct LungsArgs {
    /// The chest CT: DICOM folder or file, .nrrd, .nhdr, .nii or .nii.gz (in HU).
    input: PathBuf,
    /// Output: -label.nrrd (label map: 1 right lung, 2 left lung), .nii or .nii.gz (the
    /// same labels), or .seg.nrrd (Slicer segmentation "right lung" and "left lung").
    #[arg(short, long)]
    output: PathBuf,
    /// When a DICOM folder holds several series: the series number in `segkit info`'s
    /// listing (1, 2, ...) or its SeriesInstanceUID.
    #[arg(long)]
    series: Option<String>,
    /// Air/tissue threshold in HU instead of the automatically selected one.
    #[arg(long, allow_hyphen_values = true)]
    threshold_hu: Option<f64>,
    /// Keep the trachea and main bronchi in the lungs.
    #[arg(long)]
    keep_airways: bool,
    /// Do not fill holes (vessels, nodules) inside the lungs.
    #[arg(long)]
    no_fill_holes: bool,
    /// Print each stage of the pipeline with its start time.
    #[arg(short, long)]
    verbose: bool,
}

pub fn run(args: &LungsArgs) -> Result<()> {
    check_output(&args.output)?;
    let start = Instant::now();
    let bar = Bar::new("reading");
    let update = |done, total| bar.update(done, total);
    let dataset = OpenOptions::new()
        .series(args.series.clone())
        .progress(&update)
        .open(&args.input);
    bar.finish();
    let ct = dataset?.into_volume();
    let read_seconds = start.elapsed().as_secs_f64();
    let options = LungOptions {
        threshold_hu: args.threshold_hu,
        exclude_airways: !args.keep_airways,
        fill_holes: !args.no_fill_holes,
    };
    let t0 = Instant::now();
    let verbose = args.verbose;
    let progress: std::sync::Arc<crate::effects::ProgressFn> =
        std::sync::Arc::new(move |_fraction: f64, stage: &str| {
            if verbose {
                eprintln!("{:8.3} s  {stage}", t0.elapsed().as_secs_f64());
            }
        });
    let control = Control::new(Default::default(), Some(progress));
    let lungs = segment_lungs(&ct, &options, &control)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", args.input.display())))?;
    let compute_seconds = start.elapsed().as_secs_f64() - read_seconds;
    write_lungs(&args.output, &lungs)?;
    print_summary(&args.output, &ct, &lungs);
    eprintln!(
        "read {read_seconds:.2} s, lungs {compute_seconds:.2} s, total {:.2} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Refuses an output whose format cannot hold a label map, before any work is done.
fn check_output(path: &Path) -> Result<()> {
    match Format::from_path(path)? {
        Format::Nrrd | Format::SegNrrd | Format::Nifti => Ok(()),
        Format::Dicom => Err(Error::unsupported(
            path,
            "write the lungs as -label.nrrd, .seg.nrrd, .nii or .nii.gz",
        )),
    }
}

/// Writes the lungs in the format `path` names: `.seg.nrrd` as a segmentation with
/// Slicer's names, colours and terminology; `.nrrd` as a label map; NIfTI as labels.
pub(crate) fn write_lungs(path: &Path, lungs: &Lungs) -> Result<()> {
    match Format::from_path(path)? {
        Format::SegNrrd => io::nrrd::write_segmentation(path, &lungs.to_segmentation()),
        Format::Nrrd => io::nrrd::write_labelmap(path, &lungs.labels),
        Format::Nifti => {
            let labels = crate::volume::Volume::new(
                lungs.labels.data.mapv(|v| v as u8),
                lungs.labels.geometry,
            );
            io::nifti::write_volume(path, &AnyVolume::U8(labels))
        }
        Format::Dicom => Err(Error::unsupported(
            path,
            "write the lungs as -label.nrrd, .seg.nrrd, .nii or .nii.gz",
        )),
    }
}

fn print_summary(output: &Path, ct: &AnyVolume, lungs: &Lungs) {
    let [ni, nj, nk] = ct.size_ijk();
    let s = ct.geometry().spacing;
    println!("wrote {}", output.display());
    println!(
        "  CT {ni}x{nj}x{nk}, spacing {:.3}x{:.3}x{:.3} mm, threshold {:.0} HU",
        s[0], s[1], s[2], lungs.threshold_hu
    );
    println!(
        "  right lung {:.0} mL, left lung {:.0} mL, airways removed {:.0} mL",
        lungs.right_ml, lungs.left_ml, lungs.airways_ml
    );
    for w in &lungs.warnings {
        println!("  warning: {w}");
    }
}

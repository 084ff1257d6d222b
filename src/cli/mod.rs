//! The `segkit` command line: a thin edge over the library. Arguments are parsed here,
//! files are read and written through [`crate::io`], and errors are printed with the path
//! and the reason before exiting non-zero.

mod apply;
mod batch;
mod convert;
mod info;
mod lungs;
mod progress;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// segkit: segmentation engine for 3D Slicer's Segment Editor, and a DICOM / NRRD / NIfTI toolkit.
#[derive(Debug, Parser)]
#[command(name = "segkit", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the series or volumes found in files and folders: size, spacing, orientation,
    /// modality, transfer syntax, and warnings (uneven spacing, missing slices, gantry tilt).
    Info(info::InfoArgs),
    /// Convert a DICOM folder or file, .nrrd, .nhdr, .seg.nrrd, .nii or .nii.gz into the
    /// format named by the output's extension.
    Convert(convert::ConvertArgs),
    /// Run the gRPC engine that the Slicer extension talks to.
    Serve(serve::ServeArgs),
    /// List the effects and their parameters (Slicer's names and defaults).
    Effects(apply::EffectsArgs),
    /// Apply an effect to a volume and a label map, with Slicer's semantics.
    Apply(apply::ApplyArgs),
    /// Label every case (DICOM series, NRRD, NIfTI) under a folder: label files, a CSV
    /// report, snapshots and an HTML gallery; shards for job arrays.
    Batch(batch::BatchArgs),
    /// Segment the right (1) and left (2) lungs of a chest CT, airways excluded.
    Lungs(lungs::LungsArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Effects(args) => apply::effects(&args),
        Command::Apply(args) => apply::apply(&args),
        Command::Batch(args) => batch::run(&args),
        Command::Lungs(args) => lungs::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The library's messages already name the file and include the cause.
            eprintln!("segkit: error: {e}");
            ExitCode::FAILURE
        }
    }
}

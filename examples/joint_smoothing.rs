//! Developer entry point for the joint smoothing kernel (Slicer's Smoothing effect, method
//! `JOINT_TAUBIN`), used by `slicer-extension/tests/test_parity_joint_smoothing.py` to compare
//! the kernel alone with Slicer's VTK pipeline on the same label map (users reach it through
//! the Smoothing effect: `segkit apply smoothing -p SmoothingMethod=JOINT_TAUBIN`, or the
//! engine).
//!
//! ```text
//! cargo run --release --example joint_smoothing -- --dims I J K --factor 0.5 labels.raw out.raw
//! ```
//!
//! `labels.raw` holds `I * J * K` little-endian `u16` labels, `i` fastest (NRRD / VTK order).
//! `out.raw` gets the result in the same layout: each label's smoothed mask painted in label
//! order, so a later label wins where two smoothed masks overlap (what Slicer's writes with
//! "overwrite visible segments" give without masking). `--time` prints the kernel's time in
//! seconds on stderr as `{"effect_seconds": S}`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ndarray::Array3;
use segkit::effects::Control;
use segkit::kernels::joint_smoothing::joint_smooth;

#[derive(Parser)]
#[command(about = "Joint smoothing (Slicer's JOINT_TAUBIN) of a raw little-endian u16 label map")]
struct Args {
    /// Size in voxels along i, j, k (i fastest in the file).
    #[arg(long, num_args = 3, value_names = ["I", "J", "K"])]
    dims: Vec<usize>,
    /// Slicer's JointTaubinSmoothingFactor (0..=1).
    #[arg(long, default_value_t = 0.5)]
    factor: f64,
    /// Print the kernel's time on stderr.
    #[arg(long)]
    time: bool,
    /// The raw label map.
    input: PathBuf,
    /// Where to write the smoothed label map.
    output: PathBuf,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joint_smoothing: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let [ni, nj, nk] = args.dims[..] else {
        return Err("--dims needs three sizes".into());
    };
    let bytes = std::fs::read(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    if bytes.len() != ni * nj * nk * 2 {
        return Err(format!(
            "{}: {} bytes, expected {ni} x {nj} x {nk} x 2",
            args.input.display(),
            bytes.len()
        ));
    }
    let values: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let labels = Array3::from_shape_vec((nk, nj, ni), values).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let masks =
        joint_smooth(labels.view(), args.factor, &Control::none()).map_err(|e| e.to_string())?;
    let mut out = Array3::<u16>::zeros((nk, nj, ni));
    for (label, mask) in &masks {
        ndarray::Zip::from(&mut out)
            .and(mask)
            .par_for_each(|o, &m| {
                if m != 0 {
                    *o = *label
                }
            });
    }
    if args.time {
        eprintln!("{{\"effect_seconds\": {}}}", start.elapsed().as_secs_f64());
    }
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&args.output, bytes).map_err(|e| format!("{}: {e}", args.output.display()))
}

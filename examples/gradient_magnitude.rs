//! Developer entry point for the Watershed effect's feature image, used by
//! `slicer-extension/tests/test_parity_watershed.py` to compare segkit's recursive Gaussian
//! gradient magnitude with SimpleITK's `GradientMagnitudeRecursiveGaussian` on the same
//! voxels.
//!
//! ```text
//! cargo run --release --example gradient_magnitude -- --type i16 --dims I J K \
//!     --spacing SI SJ SK --sigma 2 voxels.raw gradient.raw
//! ```
//!
//! `voxels.raw` holds `I * J * K` little-endian values, `i` fastest; `gradient.raw` receives
//! as many little-endian `f32`, in the same order. `--time` prints the time taken on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ndarray::Array3;
use segkit::effects::Control;
use segkit::kernels::recursive_gaussian::gradient_magnitude;
use segkit::volume::Scalar;

#[derive(Parser)]
#[command(about = "Recursive Gaussian gradient magnitude (ITK's) of a raw little-endian volume")]
struct Args {
    /// Voxel type: u8, i8, u16, i16, u32, i32, f32, f64.
    #[arg(long = "type")]
    voxel_type: String,
    /// Size in voxels along i, j, k (i fastest in the file).
    #[arg(long, num_args = 3, value_names = ["I", "J", "K"])]
    dims: Vec<usize>,
    /// Voxel spacing in mm along i, j, k.
    #[arg(long, num_args = 3, value_names = ["SI", "SJ", "SK"])]
    spacing: Vec<f64>,
    /// The Gaussian's sigma in mm.
    #[arg(long)]
    sigma: f64,
    /// Print the time taken on stderr.
    #[arg(long)]
    time: bool,
    /// The raw voxel file.
    input: PathBuf,
    /// The raw f32 output file.
    output: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.voxel_type.as_str() {
        "u8" => run::<u8>(&args),
        "i8" => run::<i8>(&args),
        "u16" => run::<u16>(&args),
        "i16" => run::<i16>(&args),
        "u32" => run::<u32>(&args),
        "i32" => run::<i32>(&args),
        "f32" => run::<f32>(&args),
        "f64" => run::<f64>(&args),
        t => Err(format!("unknown voxel type {t:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradient_magnitude: {e}");
            ExitCode::from(2)
        }
    }
}

fn run<T: Scalar>(args: &Args) -> Result<(), String> {
    let [ni, nj, nk] = args.dims[..] else {
        return Err("--dims needs three sizes".into());
    };
    let [si, sj, sk] = args.spacing[..] else {
        return Err("--spacing needs three values".into());
    };
    let bytes = std::fs::read(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let size = std::mem::size_of::<T>();
    if bytes.len() != ni * nj * nk * size {
        return Err(format!(
            "{}: {} bytes, expected {ni} x {nj} x {nk} x {size}",
            args.input.display(),
            bytes.len()
        ));
    }
    let values: Vec<T> = bytes.chunks_exact(size).map(T::from_le_slice).collect();
    let voxels = Array3::from_shape_vec((nk, nj, ni), values).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let g = gradient_magnitude(voxels.view(), [si, sj, sk], args.sigma, &Control::none())
        .map_err(|e| e.to_string())?;
    if args.time {
        eprintln!("gradient: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    let out: Vec<u8> = g.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&args.output, out).map_err(|e| format!("{}: {e}", args.output.display()))
}

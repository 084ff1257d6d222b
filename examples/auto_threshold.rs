//! Developer entry point for the automatic threshold methods (Slicer's Threshold effect),
//! used by `tests/python/test_auto_threshold.py` to compare segkit with Slicer's
//! `vtkITKImageThresholdCalculator` on the same voxels, until `segkit apply threshold
//! -p AutoThresholdMethod=...` exists.
//!
//! ```text
//! cargo run --example auto_threshold -- --type i16 --dims I J K --method OTSU voxels.raw
//! cargo run --example auto_threshold -- --type f32 --dims I J K --method ALL voxels.raw
//! ```
//!
//! `voxels.raw` holds `I * J * K` little-endian values, `i` fastest (the order of NRRD, NIfTI
//! and VTK image data). With one method the threshold is printed alone, in full precision
//! (shortest text that reads back to the same `f64`); a method that fails prints its error
//! on stderr and exits with status 1. With `ALL` one line per method is printed:
//! `OTSU 103.14111328125` or `KITTLER_ILLINGWORTH error: ...`. `--time` prints the time
//! taken on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use ndarray::Array3;
use segkit::effects::auto_threshold::{auto_threshold, AutoThresholdMethod};
use segkit::volume::Scalar;

#[derive(Parser)]
#[command(about = "Automatic threshold (Slicer's Threshold effect) of a raw little-endian volume")]
struct Args {
    /// Voxel type: u8, i8, u16, i16, u32, i32, u64, i64, f32, f64.
    #[arg(long = "type")]
    voxel_type: String,
    /// Size in voxels along i, j, k (i fastest in the file).
    #[arg(long, num_args = 3, value_names = ["I", "J", "K"])]
    dims: Vec<usize>,
    /// Slicer's AutoThresholdMethod value (OTSU, HUANG, ISO_DATA, ...) or ALL.
    #[arg(long, default_value = "OTSU")]
    method: String,
    /// Print the time taken on stderr.
    #[arg(long)]
    time: bool,
    /// The raw voxel file.
    file: PathBuf,
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
        "u64" => run::<u64>(&args),
        "i64" => run::<i64>(&args),
        "f32" => run::<f32>(&args),
        "f64" => run::<f64>(&args),
        t => Err(format!("unknown voxel type {t:?}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auto_threshold: {e}");
            ExitCode::from(2)
        }
    }
}

fn run<T: Scalar>(args: &Args) -> Result<ExitCode, String> {
    let methods: Vec<AutoThresholdMethod> = if args.method == "ALL" {
        AutoThresholdMethod::ALL.to_vec()
    } else {
        vec![AutoThresholdMethod::from_slicer_name(&args.method)
            .ok_or_else(|| format!("unknown method {:?}", args.method))?]
    };
    let [ni, nj, nk] = args.dims[..] else {
        return Err("--dims needs three sizes".into());
    };
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let size = std::mem::size_of::<T>();
    if bytes.len() != ni * nj * nk * size {
        return Err(format!(
            "{}: {} bytes, expected {ni} x {nj} x {nk} x {size}",
            args.file.display(),
            bytes.len()
        ));
    }
    let values: Vec<T> = bytes.chunks_exact(size).map(T::from_le_slice).collect();
    let voxels = Array3::from_shape_vec((nk, nj, ni), values).map_err(|e| e.to_string())?;

    let mut code = ExitCode::SUCCESS;
    for method in methods {
        let start = Instant::now();
        let result = auto_threshold(voxels.view(), method);
        if args.time {
            eprintln!("{method}: {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
        }
        match (result, args.method == "ALL") {
            (Ok(t), true) => println!("{method} {t}"),
            (Ok(t), false) => println!("{t}"),
            (Err(e), true) => println!("{method} error: {e}"),
            (Err(e), false) => {
                eprintln!("{e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

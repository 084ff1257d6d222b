//! `segkit batch INPUT_DIR -o OUTPUT_DIR`: label every case under a folder, with a CSV
//! report, a snapshot per case and an HTML gallery to check them by eye.
//!
//! The pipeline is a plain function argument ([`Pipeline`]), so the runner is tested with
//! fake pipelines and new pipelines plug in without touching it. The runner never stops
//! for one case: read errors, pipeline errors and panics become a `failed` row with the
//! reason, and every output file (label map, snapshot, report, gallery) is written
//! atomically, so an interrupted run leaves only complete files and a valid report.

mod cases;
mod gallery;
mod report;

use crate::effects::{Control, EffectError};
use crate::error::{Error, Result};
use crate::io::{self, snapshot};
use crate::volume::{AnyVolume, Labelmap, Segment, Segmentation};
pub use cases::{discover, Shard};
use cases::{Case, Source};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::{Row, Status};
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Folder of the snapshots inside the output folder.
const SNAPSHOT_DIR: &str = "snapshots";
/// Failed cases listed by name in the closing summary (the report has all).
const SUMMARY_FAILURES: usize = 20;

#[derive(Debug, Args)]
#[command(after_help = "\
Outputs in OUTPUT_DIR: <case>-label.nrrd (or -label.nii.gz, .seg.nrrd), snapshots/<case>.png,
report.csv (report-<I>-of-<N>.csv with --shard) and index.html (open it in a browser).
A rerun skips cases already labelled (an ok row in a report and the label file present).

Exit status: 0 when at least one case was labelled or was already done (failed cases are in
the report with the reason); 1 when every case failed, no case was found, or a folder cannot
be read or written; 2 when the arguments are wrong.")]
pub struct BatchArgs {
    /// Folder searched recursively: every DICOM image series is a case, and so is every
    /// .nrrd, .nhdr, .nii and .nii.gz file whose name does not say label or segmentation.
    input: PathBuf,
    /// Output folder (created when missing); shards may share it.
    #[arg(short, long)]
    output: PathBuf,
    /// The pipeline run on every case.
    #[arg(long, value_enum, default_value_t = PipelineName::Lungs)]
    pipeline: PipelineName,
    /// Cases labelled at the same time (each case already uses every core; memory grows
    /// with N).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Label only shard I of N (0-based): the cases whose index in the sorted list is I
    /// modulo N. For Kubernetes indexed Jobs: --shard $JOB_COMPLETION_INDEX/N; for Slurm
    /// arrays (--array=0-(N-1)): --shard $SLURM_ARRAY_TASK_ID/N.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Format of the label files.
    #[arg(long, value_enum, default_value_t = LabelFormat::LabelNrrd)]
    format: LabelFormat,
    /// Label every case again, even those already done.
    #[arg(long)]
    force: bool,
}

/// The pipelines `segkit batch` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PipelineName {
    /// Right and left lungs of a chest CT (labels 1 and 2).
    Lungs,
}

/// Formats of the label files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LabelFormat {
    /// `<case>-label.nrrd`: a Slicer label map.
    #[default]
    LabelNrrd,
    /// `<case>-label.nii.gz`: a NIfTI label map (uint16).
    NiiGz,
    /// `<case>.seg.nrrd`: a Slicer segmentation with named, coloured segments.
    SegNrrd,
    /// `<case>.seg.dcm`: a DICOM Segmentation object referencing the case's series (DICOM
    /// cases only).
    DicomSeg,
}

impl LabelFormat {
    /// The label file's name for `case`.
    pub fn file_name(self, case: &str) -> String {
        match self {
            LabelFormat::LabelNrrd => format!("{case}-label.nrrd"),
            LabelFormat::NiiGz => format!("{case}-label.nii.gz"),
            LabelFormat::SegNrrd => format!("{case}.seg.nrrd"),
            LabelFormat::DicomSeg => format!("{case}.seg.dcm"),
        }
    }

    /// Writes the labels; `reference` is the case's DICOM folder and SeriesInstanceUID
    /// (needed by DICOM SEG).
    fn write(
        self,
        path: &Path,
        labelled: Labelled,
        reference: Option<(&Path, &str)>,
    ) -> Result<()> {
        match self {
            LabelFormat::LabelNrrd => io::nrrd::write_labelmap(path, &labelled.labels),
            LabelFormat::NiiGz => io::nifti::write_volume(path, &AnyVolume::U16(labelled.labels)),
            LabelFormat::SegNrrd => {
                let segmentation = Segmentation {
                    geometry: labelled.labels.geometry,
                    layers: vec![labelled.labels.data],
                    segments: labelled.segments,
                    extent_offset: [0; 3],
                    extra_fields: Vec::new(),
                };
                io::nrrd::write_segmentation(path, &segmentation)
            }
            LabelFormat::DicomSeg => {
                let Some((folder, series_uid)) = reference else {
                    return Err(Error::InvalidArgument(
                        "--format dicom-seg needs a DICOM case to reference; this case is a \
                         volume file (use label-nrrd, nii-gz or seg-nrrd)"
                            .into(),
                    ));
                };
                let segmentation = Segmentation {
                    geometry: labelled.labels.geometry,
                    layers: vec![labelled.labels.data],
                    segments: labelled.segments,
                    extent_offset: [0; 3],
                    extra_fields: Vec::new(),
                };
                io::dicom::SegWriteOptions::new()
                    .algorithm_type(io::dicom::SegmentAlgorithmType::Automatic)
                    .algorithm_name("segkit lungs")
                    .reference_series(Some(series_uid.to_string()))
                    .write(path, &segmentation, folder)
            }
        }
    }
}

/// What a pipeline answers for one case.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// On the case's lattice; 0 is background.
    pub labels: Labelmap,
    /// Name and colour of each label value (for `.seg.nrrd` and the snapshot outlines).
    pub segments: Vec<Segment>,
    pub right_ml: f64,
    pub left_ml: f64,
    pub threshold_hu: f64,
    /// What a person checking the result should know.
    pub warnings: Vec<String>,
}

/// The function run on every case.
pub type PipelineFn = dyn Fn(&AnyVolume, &Control) -> Result<Labelled, EffectError> + Send + Sync;

/// A pipeline and what the batch needs to know about it.
pub struct Pipeline {
    /// Named in error messages (`lungs: no lungs found ...`).
    pub name: &'static str,
    /// DICOM series of another Modality fail without being read (`Some("CT")`).
    pub modality: Option<&'static str>,
    /// Colours of labels 1 and 2 (the gallery's swatches).
    pub colors: [[f64; 3]; 2],
    pub run: Box<PipelineFn>,
}

impl PipelineName {
    /// The pipeline this name stands for.
    pub fn pipeline(self) -> Pipeline {
        match self {
            PipelineName::Lungs => lungs_pipeline(),
        }
    }
}

/// [`crate::auto::lungs::segment_lungs`] with its default options.
fn lungs_pipeline() -> Pipeline {
    use crate::auto::lungs::{segment_lungs, LungOptions, LEFT_LUNG_COLOR, RIGHT_LUNG_COLOR};
    Pipeline {
        name: "lungs",
        modality: Some("CT"),
        colors: [RIGHT_LUNG_COLOR, LEFT_LUNG_COLOR],
        run: Box::new(|ct, control| {
            let lungs = segment_lungs(ct, &LungOptions::default(), control)?;
            // Names, colours and terminology as `segkit lungs` writes them.
            let segments = lungs.to_segmentation().segments;
            Ok(Labelled {
                labels: lungs.labels,
                segments,
                right_ml: lungs.right_ml,
                left_ml: lungs.left_ml,
                threshold_hu: lungs.threshold_hu,
                warnings: lungs.warnings,
            })
        }),
    }
}

/// A batch to run: where from, where to, which part, how.
#[derive(Debug, Clone)]
pub struct Config {
    pub input: PathBuf,
    pub output: PathBuf,
    pub shard: Shard,
    pub format: LabelFormat,
    /// Cases run at the same time (at least 1).
    pub jobs: usize,
    /// Run cases already done again.
    pub force: bool,
}

impl Config {
    /// The report this run writes: `report.csv`, or `report-<I>-of-<N>.csv` for a shard.
    pub fn report_path(&self) -> PathBuf {
        if self.shard.count == 1 {
            self.output.join("report.csv")
        } else {
            self.output.join(format!(
                "report-{}-of-{}.csv",
                self.shard.index, self.shard.count
            ))
        }
    }
}

/// What happened, for the closing summary and the exit status.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Cases found under the input folder (all shards).
    pub found: usize,
    /// Cases in this shard.
    pub in_shard: usize,
    pub ok: usize,
    pub failed: usize,
    /// Cases done by an earlier run and not run again.
    pub already_done: usize,
    /// Files under the input folder that are not images (reported as `skipped` rows).
    pub skipped_files: usize,
    /// Label maps and segmentations left out by name.
    pub label_files: usize,
    /// Failed cases and why.
    pub failures: Vec<(String, String)>,
    pub elapsed: Duration,
    pub report: PathBuf,
    pub index: PathBuf,
    /// Problems writing the report or the gallery (the batch went on).
    pub write_errors: Vec<String>,
}

/// Hears about the cases as they run (a progress bar, a log); called from worker threads.
pub trait Observer: Sync {
    /// The list of cases is known: `total` will run.
    fn planned(&self, _total: usize) {}
    fn started(&self, _case: &str) {}
    fn finished(&self, _row: &Row, _done: usize, _total: usize) {}
    /// Something worth telling that is not a case's result.
    fn note(&self, _message: &str) {}
}

/// Runs the batch: discovers the cases, keeps this shard's, skips those done earlier
/// (unless `force`), runs the rest `jobs` at a time, and writes the label files, the
/// snapshots, the report (after each case) and the gallery.
///
/// # Errors
/// Only for the batch as a whole: the input folder cannot be read or holds no case, the
/// output folder cannot be created. Cases that fail are rows of the report.
pub fn run_batch(config: &Config, pipeline: &Pipeline, observer: &dyn Observer) -> Result<Summary> {
    let started = Instant::now();
    if !config.input.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: not a folder (segkit batch labels every case under a folder)",
            config.input.display()
        )));
    }
    let snapshots = config.output.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&snapshots).map_err(|e| Error::io(&snapshots, e))?;

    let found = discover(&config.input, std::slice::from_ref(&config.output))?;
    if found.cases.is_empty() {
        // Nothing is written: an earlier report in the output folder stays as it was.
        let example = found
            .skipped
            .first()
            .map(|(p, why)| {
                format!(
                    "; {} file(s) are not images, e.g. {p}: {why}",
                    found.skipped.len()
                )
            })
            .unwrap_or_default();
        return Err(Error::InvalidArgument(format!(
            "{}: no case found (no DICOM image series, no .nrrd, .nhdr, .nii or .nii.gz \
             volume){example}",
            config.input.display()
        )));
    }
    let mut summary = Summary {
        found: found.cases.len(),
        label_files: found.label_files,
        report: config.report_path(),
        index: config.output.join("index.html"),
        ..Summary::default()
    };
    let mut rows: Vec<Row> = Vec::new();
    // Files that are not cases are reported once, by the first shard.
    if config.shard.index == 0 {
        summary.skipped_files = found.skipped.len();
        rows.extend(found.skipped.iter().map(|(path, why)| Row {
            case: path.clone(),
            status: Status::Skipped,
            error: why.clone(),
            source: path.clone(),
            ..Row::default()
        }));
    }

    let mine = config.shard.select(found.cases);
    summary.in_shard = mine.len();
    let (previous, problems) = report::merged_rows(&config.output);
    for p in problems {
        observer.note(&format!("an earlier report was not read: {p}"));
    }
    let mut todo: Vec<Case> = Vec::new();
    for (_, case) in mine {
        match previous.get(&case.name).filter(|_| !config.force) {
            Some(row) if is_done(row, &case, config) => {
                rows.push(row.clone());
                summary.already_done += 1;
            }
            _ => todo.push(case),
        }
    }

    let state = Mutex::new(State { rows, summary });
    {
        let mut s = lock(&state);
        s.save(config, pipeline.colors);
    }
    observer.planned(todo.len());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let total = todo.len();
    let worker = || loop {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let Some(case) = todo.get(n) else { break };
        observer.started(&case.name);
        let row = run_case(case, config, pipeline);
        let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
        observer.finished(&row, finished, total);
        let mut s = lock(&state);
        match row.status {
            Status::Ok => s.summary.ok += 1,
            _ => {
                s.summary.failed += 1;
                s.summary
                    .failures
                    .push((row.case.clone(), row.error.clone()));
            }
        }
        s.rows.push(row);
        s.save(config, pipeline.colors);
    };
    let jobs = config.jobs.clamp(1, total.max(1));
    std::thread::scope(|scope| {
        // Plain threads, not a rayon pool: each case's own parallel loops then run on
        // rayon's global pool with every core, whatever `jobs` is.
        for _ in 1..jobs {
            scope.spawn(worker);
        }
        worker();
    });

    let mut state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    state.save(config, pipeline.colors);
    state.summary.failures.sort();
    state.summary.elapsed = started.elapsed();
    Ok(state.summary)
}

struct State {
    rows: Vec<Row>,
    summary: Summary,
}

impl State {
    /// Writes the report and the gallery; failures are kept for the summary, not fatal.
    fn save(&mut self, config: &Config, colors: [[f64; 3]; 2]) {
        if let Err(e) = report::write_report(&config.report_path(), &self.rows) {
            self.summary.write_errors.push(e.to_string());
        }
        if let Err(e) = gallery::write_index(&config.output, colors) {
            self.summary.write_errors.push(e.to_string());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the rows half-updated (push is last).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A case is done when a report says ok and its label file, in this run's format, is there.
fn is_done(row: &Row, case: &Case, config: &Config) -> bool {
    row.status == Status::Ok
        && row.label_file == config.format.file_name(&case.name)
        && config.output.join(&row.label_file).is_file()
}

/// Runs one case to its report row; never panics (a panic in the pipeline is a failure).
fn run_case(case: &Case, config: &Config, pipeline: &Pipeline) -> Row {
    let started = Instant::now();
    let mut row = Row {
        case: case.name.clone(),
        series_uid: case.series_uid().to_string(),
        source: match &case.source {
            Source::File(p) => relative(&config.input, p),
            Source::Dicom(s) => s
                .files
                .first()
                .and_then(|f| f.path.parent())
                .map(|p| relative(&config.input, p))
                .unwrap_or_default(),
        },
        ..Row::default()
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        label_case(case, config, pipeline, &mut row)
    }));
    match outcome {
        Ok(Ok(())) => row.status = Status::Ok,
        Ok(Err(reason)) => {
            row.status = Status::Failed;
            row.error = reason;
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            row.status = Status::Failed;
            row.error = format!("internal error in segkit (a panic, please report it): {message}");
        }
    }
    row.seconds = format!("{:.1}", started.elapsed().as_secs_f64());
    row
}

fn label_case(
    case: &Case,
    config: &Config,
    pipeline: &Pipeline,
    row: &mut Row,
) -> std::result::Result<(), String> {
    let mut warnings: Vec<String> = Vec::new();
    let volume = match &case.source {
        Source::Dicom(series) => {
            row.dimensions = report::format_dimensions(series.size_ijk);
            row.spacing_mm = report::format_spacing(series.geometry.spacing);
            if let Some(wanted) = pipeline.modality {
                if !series.modality.trim().eq_ignore_ascii_case(wanted) {
                    return Err(format!(
                        "not a {wanted}: the series is {} (Modality '{}'); the {} pipeline needs {wanted}",
                        series.label(),
                        series.modality,
                        pipeline.name
                    ));
                }
            }
            warnings.extend(series.warnings.iter().cloned());
            series.read().map_err(|e| e.to_string())?
        }
        Source::File(path) => io::open(path).map_err(|e| e.to_string())?.into_volume(),
    };
    row.dimensions = report::format_dimensions(volume.size_ijk());
    row.spacing_mm = report::format_spacing(volume.geometry().spacing);
    let snapshot_rel = format!("{SNAPSHOT_DIR}/{}.png", case.name);
    let snapshot_path = config.output.join(&snapshot_rel);

    let labelled = match (pipeline.run)(&volume, &Control::none()) {
        Ok(l) => l,
        Err(e) => {
            // A picture of what the pipeline could not label helps to see why.
            let empty = Labelmap::zeros(volume.size_ijk(), *volume.geometry());
            if write_snapshot(&volume, &empty, &[], &snapshot_path).is_ok() {
                row.snapshot = snapshot_rel;
            }
            return Err(format!("{}: {e}", pipeline.name));
        }
    };
    if labelled.labels.size_ijk() != volume.size_ijk() {
        return Err(format!(
            "{}: labels of {:?} voxels for a volume of {:?}",
            pipeline.name,
            labelled.labels.size_ijk(),
            volume.size_ijk()
        ));
    }
    warnings.extend(labelled.warnings.iter().cloned());
    row.right_lung_ml = report::format_one_decimal(labelled.right_ml);
    row.left_lung_ml = report::format_one_decimal(labelled.left_ml);
    row.threshold_hu = report::format_one_decimal(labelled.threshold_hu);

    match write_snapshot(
        &volume,
        &labelled.labels,
        &labelled.segments,
        &snapshot_path,
    ) {
        Ok(()) => row.snapshot = snapshot_rel,
        Err(e) => warnings.push(format!("no snapshot: {e}")),
    }
    drop(volume);
    let label_name = config.format.file_name(&case.name);
    let label_path = config.output.join(&label_name);
    row.warnings = warnings.join("; ");
    let folder = match &case.source {
        Source::Dicom(series) => series.files.first().and_then(|f| f.path.parent()),
        Source::File(_) => None,
    };
    let reference = folder.map(|f| (f, case.series_uid()));
    config
        .format
        .write(&label_path, labelled, reference)
        .map_err(|e| e.to_string())?;
    row.label_file = label_name;
    Ok(())
}

fn write_snapshot(
    volume: &AnyVolume,
    labels: &Labelmap,
    segments: &[Segment],
    path: &Path,
) -> Result<()> {
    let options = snapshot::SnapshotOptions {
        colors: segments.iter().map(|s| (s.label_value, s.color)).collect(),
        ..Default::default()
    };
    let image = snapshot::render_snapshot(volume, labels, &options)?;
    snapshot::write_png(path, &image)
}

fn relative(base: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(base).unwrap_or(p);
    let s = rel.to_string_lossy().replace('\\', "/");
    if s.is_empty() {
        ".".into()
    } else {
        s
    }
}

/// The progress bar (on a terminal) or one line per case (in a log).
struct Console {
    bar: ProgressBar,
    interactive: bool,
    running: Mutex<Vec<String>>,
}

impl Console {
    fn new() -> Self {
        let interactive = std::io::stderr().is_terminal();
        let bar = ProgressBar::new(0);
        bar.set_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} cases, ETA {eta}  {wide_msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Console {
            bar,
            interactive,
            running: Mutex::new(Vec::new()),
        }
    }

    fn line(&self, text: &str) {
        if self.interactive {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    fn show_running(&self, running: &[String]) {
        self.bar.set_message(running.join(", "));
    }
}

impl Observer for Console {
    fn planned(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.enable_steady_tick(Duration::from_millis(500));
    }

    fn started(&self, case: &str) {
        let mut running = lock(&self.running);
        running.push(case.to_string());
        self.show_running(&running);
    }

    fn finished(&self, row: &Row, done: usize, total: usize) {
        {
            let mut running = lock(&self.running);
            running.retain(|c| c != &row.case);
            self.show_running(&running);
        }
        let detail = match row.status {
            Status::Ok => {
                let mut d = format!("R {} mL, L {} mL", row.right_lung_ml, row.left_lung_ml);
                let n = row.warning_list().len();
                if n > 0 {
                    d.push_str(&format!(", {n} warning(s)"));
                }
                d
            }
            _ => row.error.clone(),
        };
        self.line(&format!(
            "[{done}/{total}] {}: {} ({}) {} s",
            row.case,
            row.status.as_str(),
            detail,
            row.seconds
        ));
        self.bar.set_position(done as u64);
    }

    fn note(&self, message: &str) {
        self.line(&format!("note: {message}"));
    }
}

/// `segkit batch`.
pub fn run(args: &BatchArgs) -> Result<()> {
    let config = Config {
        input: args.input.clone(),
        output: args.output.clone(),
        shard: args.shard.unwrap_or(Shard::ALL),
        format: args.format,
        jobs: usize::from(args.jobs),
        force: args.force,
    };
    let pipeline = args.pipeline.pipeline();
    let console = Console::new();
    let summary = run_batch(&config, &pipeline, &console);
    console.bar.finish_and_clear();
    let summary = summary?;
    print_summary(&summary, &config);
    if summary.failed > 0 && summary.ok == 0 && summary.already_done == 0 {
        return Err(Error::InvalidArgument(format!(
            "every case failed ({}); the reasons are in {}",
            summary.failed,
            summary.report.display()
        )));
    }
    if !summary.write_errors.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the report or gallery could not be written: {}",
            summary.write_errors[0]
        )));
    }
    Ok(())
}

fn print_summary(s: &Summary, config: &Config) {
    let shard = if config.shard.count > 1 {
        format!(
            " in shard {} ({} of {} cases)",
            config.shard, s.in_shard, s.found
        )
    } else {
        String::new()
    };
    eprintln!(
        "batch{shard}: {} ok, {} failed, {} skipped (done before), {} files not images; {}",
        s.ok,
        s.failed,
        s.already_done,
        s.skipped_files,
        format_duration(s.elapsed)
    );
    for (case, why) in s.failures.iter().take(SUMMARY_FAILURES) {
        eprintln!("  failed: {case}: {why}");
    }
    if s.failures.len() > SUMMARY_FAILURES {
        eprintln!(
            "  ... and {} more failed cases",
            s.failures.len() - SUMMARY_FAILURES
        );
    }
    if s.label_files > 0 {
        eprintln!(
            "  {} label map/segmentation file(s) in the input were left out by name",
            s.label_files
        );
    }
    for e in &s.write_errors {
        eprintln!("  could not write: {e}");
    }
    eprintln!(
        "report: {}\ngallery: {}",
        s.report.display(),
        s.index.display()
    );
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = d.as_secs();
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests;

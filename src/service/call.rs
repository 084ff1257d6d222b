//! One log line per engine call: method, volume id, effect, sizes, duration and status.
//!
//! A [`Call`] is started when a request arrives; the handler adds what it learns (the
//! volume id, the effect, the lattice) and the call's answer ends it, which writes the line
//! through `tracing` (target `segkit::call`). Only ids, effect names, counts and codes are
//! logged: never a volume's name, a path or a DICOM field, which may identify a patient.
//! An error's message (which may name a file) is added only at the debug level. A streamed
//! answer ends its call when the stream ends.

use super::EngineError;
use std::sync::Mutex;
use std::time::Instant;
use tonic::{Code, Response, Status};

/// What the log line of a call says besides its method, duration and status.
#[derive(Debug, Default, Clone)]
struct Fields {
    volume_id: String,
    effect: String,
    /// Voxels of the request's lattice.
    voxels: u64,
    segments: usize,
    /// Bytes received (upload) or sent (export, download).
    bytes: u64,
}

/// A call in progress.
#[derive(Debug)]
pub struct Call {
    method: &'static str,
    started: Instant,
    fields: Mutex<Fields>,
}

impl Call {
    pub fn start(method: &'static str) -> Self {
        Call {
            method,
            started: Instant::now(),
            fields: Mutex::new(Fields::default()),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Fields)) {
        f(&mut self.fields.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn volume(&self, id: &str) {
        self.with(|f| f.volume_id = id.to_string());
    }

    pub fn effect(&self, name: &str) {
        self.with(|f| f.effect = name.to_string());
    }

    pub fn lattice(&self, size: [usize; 3], segments: usize) {
        self.with(|f| {
            f.voxels = size.iter().map(|&n| n as u64).product();
            f.segments = segments;
        });
    }

    pub fn bytes(&self, n: u64) {
        self.with(|f| f.bytes = n);
    }

    /// Ends the call with its answer, logging it.
    pub fn answer<T>(self, result: Result<T, EngineError>) -> Result<Response<T>, Status> {
        let result = result.map_err(Status::from);
        match &result {
            Ok(_) => self.end(Code::Ok, ""),
            Err(s) => self.end(s.code(), s.message()),
        }
        result.map(Response::new)
    }

    /// Ends the call with a status (a streamed answer that finished or failed).
    pub fn end(self, code: Code, message: &str) {
        let f = self.fields.into_inner().unwrap_or_else(|e| e.into_inner());
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let code = format!("{code:?}");
        let message = if tracing::enabled!(target: "segkit::call", tracing::Level::DEBUG) {
            message
        } else {
            ""
        };
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "segkit::call",
                    method = self.method,
                    volume_id = f.volume_id.as_str(),
                    effect = f.effect.as_str(),
                    voxels = f.voxels,
                    segments = f.segments,
                    bytes = f.bytes,
                    ms = (ms * 10.0).round() / 10.0,
                    status = code.as_str(),
                    message,
                )
            };
        }
        match code.as_str() {
            "Ok" | "Cancelled" | "NotFound" => line!(info),
            "Internal" | "Unknown" | "DataLoss" => line!(error),
            _ => line!(warn),
        }
    }
}

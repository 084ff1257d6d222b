//! The `Engine` service: each RPC decodes and checks its request, runs library code on the
//! blocking pool, and encodes the answer.

use super::budget::{effect_bytes, export_bytes, WorkBudget, WorkPermit};
use super::cache::{volume_id, CachedVolume, Refused, Reservation, VolumeCache};
use super::call::Call;
use super::codec::{self, geometry_from_pb, geometry_to_pb, mask_from_pb, mask_to_pb};
use super::paths::PathPolicy;
use super::preview::{segments_from_pb, PreviewSession, PreviewStore};
use super::EngineError;
use super::{pb, STREAM_CHANNEL_CAPACITY};
use crate::effects::catalog::{self, RunInput};
use crate::effects::masking::{apply_output, MaskMode, Masking, OverwriteMode, SegmentMasks};
use crate::effects::{
    Control, EffectOutput, EffectSpec, FromSource, Input, ModificationMode, ParamType, Target,
};
use crate::io::{self, Dataset, OpenOptions};
use crate::volume::{AnyVolume, Geometry, Segment, Segmentation};
use crate::Error;
use ndarray::Array3;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

/// The engine's state: the volume cache, the working-memory budget of calls in flight, the
/// rule for client-named paths, and how many effects are computing.
#[derive(Debug, Clone)]
pub struct EngineService {
    cache: Arc<VolumeCache>,
    work: WorkBudget,
    paths: Arc<PathPolicy>,
    running: Arc<AtomicUsize>,
    previews: PreviewStore,
}

/// How long a new volume waits for volumes not yet asked for before evicting them.
const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a new volume waits for cache room held by running calls.
const HELD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The limits an engine runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Voxels of cached volumes (including evicted ones that calls still use).
    pub cache_bytes: u64,
    /// Working memory of uploads, effects and exports in flight.
    pub work_bytes: u64,
    /// Uploads, effects and exports computing at once.
    pub concurrent_calls: usize,
}

impl EngineService {
    /// An engine with these limits and this rule for client-named paths.
    pub fn new(limits: &Limits, paths: PathPolicy) -> Self {
        EngineService {
            cache: Arc::new(VolumeCache::new(limits.cache_bytes)),
            work: WorkBudget::new(limits.work_bytes, limits.concurrent_calls),
            paths: Arc::new(paths),
            running: Arc::new(AtomicUsize::new(0)),
            // Preview sessions get their own budget, as large as the cache's.
            previews: PreviewStore::new(limits.cache_bytes),
        }
    }

    fn volume(&self, id: &str) -> Result<Arc<CachedVolume>, EngineError> {
        if id.is_empty() {
            return Err(EngineError::bad("volume_id is empty"));
        }
        self.cache.get(id).ok_or_else(|| {
            EngineError::not_found(format!(
                "volume {id} is not in the engine's cache (evicted or engine restarted): upload it again"
            ))
        })
    }

    fn cache_volume(
        &self,
        volume: AnyVolume,
        name: String,
        warnings: Vec<String>,
    ) -> Result<pb::VolumeRef, EngineError> {
        self.cache_volume_in(volume, name, warnings, None)
    }

    /// Caches a volume, in the room `room` reserved for it if given (it never waits
    /// then), else waiting for room as [`Self::cache_room`] does.
    fn cache_volume_in(
        &self,
        volume: AnyVolume,
        name: String,
        warnings: Vec<String>,
        room: Option<Reservation>,
    ) -> Result<pb::VolumeRef, EngineError> {
        let (minimum_value, maximum_value) = volume.min_max().unwrap_or((0.0, 0.0));
        let id = volume_id(&volume);
        let cached = CachedVolume {
            id,
            volume: Arc::new(volume),
            name,
            minimum_value,
            maximum_value,
            warnings,
        };
        if let Some(room) = room {
            return self
                .cache
                .insert_reserved(cached, room)
                .map(|c| volume_ref(&c))
                .map_err(|(refused, _)| self.refused(refused));
        }
        // Room held by evicted volumes that running calls still use comes back when those
        // calls end: wait for it a while rather than fail the request.
        let waited = Instant::now();
        let mut entry = cached;
        let cached = loop {
            // Volumes not yet asked for are kept a moment for the clients that sent them,
            // then they may go too.
            match self.cache.insert(entry, waited.elapsed() > FRESH_WAIT) {
                Ok(c) => break c,
                Err((Refused::Held(_), back)) if waited.elapsed() < HELD_WAIT => {
                    entry = back;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err((refused, _)) => return Err(self.refused(refused)),
            }
        };
        Ok(volume_ref(&cached))
    }

    /// Reserves cache room for a volume of `bytes` before it is received or read, waiting
    /// as [`Self::cache_volume`] does for room that running calls, uploads in progress and
    /// volumes not yet asked for hold. The volume's memory then counts against
    /// `--cache-mb` from its first byte, and nothing waits with voxels in hand.
    async fn cache_room(&self, bytes: u64) -> Result<Reservation, EngineError> {
        let waited = Instant::now();
        loop {
            match self.cache.reserve(bytes, waited.elapsed() > FRESH_WAIT) {
                Ok(room) => return Ok(room),
                Err(Refused::Held(_)) if waited.elapsed() < HELD_WAIT => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(refused) => return Err(self.refused(refused)),
            }
        }
    }

    fn refused(&self, refused: Refused) -> EngineError {
        match refused {
            Refused::TooLarge(bytes) => EngineError::TooLarge(format!(
                "volume of {bytes} bytes is larger than the engine's cache of {} bytes (segkit serve --cache-mb)",
                self.cache.limit_bytes()
            )),
            Refused::Held(held) => EngineError::TooLarge(format!(
                "no room in the engine's cache of {} bytes: {held} bytes are volumes that running \
                 calls still use or that are being uploaded (waited {} s); retry later or raise \
                 segkit serve --cache-mb",
                self.cache.limit_bytes(),
                HELD_WAIT.as_secs()
            )),
        }
    }
}

fn volume_ref(v: &CachedVolume) -> pb::VolumeRef {
    let size = v.volume.size_ijk();
    pb::VolumeRef {
        volume_id: v.id.clone(),
        header: Some(pb::VolumeHeader {
            geometry: Some(geometry_to_pb(size, v.volume.geometry())),
            scalar_type: codec::scalar_type_to_pb(v.volume.scalar_type()) as i32,
            total_bytes: v.bytes(),
            name: v.name.clone(),
        }),
        minimum_value: v.minimum_value,
        maximum_value: v.maximum_value,
        warnings: v.warnings.clone(),
    }
}

/// Runs CPU work on the blocking pool, so the async runtime keeps serving.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Internal(format!("engine task failed: {e}")))?
}

#[tonic::async_trait]
impl pb::engine_server::Engine for EngineService {
    async fn get_engine_info(
        &self,
        _: Request<pb::GetEngineInfoRequest>,
    ) -> Result<Response<pb::EngineInfo>, Status> {
        Ok(Response::new(pb::EngineInfo {
            name: "segkit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: "segkit.v1".into(),
            max_message_bytes: super::MAX_MESSAGE_BYTES as u64,
            upload_chunk_bytes: super::UPLOAD_CHUNK_BYTES as u64,
            cache_bytes: self.cache.limit_bytes(),
            open_by_path: self.paths.allowed(),
            effects_running: self.running.load(Ordering::Relaxed) as u32,
            previews_open: self.previews.len() as u32,
        }))
    }

    async fn list_effects(
        &self,
        _: Request<pb::ListEffectsRequest>,
    ) -> Result<Response<pb::ListEffectsResponse>, Status> {
        Ok(Response::new(pb::ListEffectsResponse {
            effects: catalog::effects().iter().map(effect_to_pb).collect(),
        }))
    }

    async fn upload_volume(
        &self,
        request: Request<Streaming<pb::UploadVolumeRequest>>,
    ) -> Result<Response<pb::VolumeRef>, Status> {
        let call = Call::start("UploadVolume");
        let result = self.upload(request.into_inner(), &call).await;
        call.answer(result)
    }

    async fn open_volume(
        &self,
        request: Request<pb::OpenVolumeRequest>,
    ) -> Result<Response<pb::VolumeRef>, Status> {
        let call = Call::start("OpenVolume");
        let result = self.open(request.into_inner(), &call).await;
        call.answer(result)
    }

    async fn get_volume(
        &self,
        request: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<pb::VolumeRef>, Status> {
        let v = self.volume(&request.into_inner().volume_id)?;
        Ok(Response::new(volume_ref(&v)))
    }

    async fn start_preview(
        &self,
        request: Request<pb::StartPreviewRequest>,
    ) -> Result<Response<pb::PreviewResponse>, Status> {
        let call = Call::start("StartPreview");
        let result = self
            .start_preview_session(request.into_inner(), &call)
            .await;
        call.answer(result)
    }

    async fn update_preview(
        &self,
        request: Request<pb::UpdatePreviewRequest>,
    ) -> Result<Response<pb::PreviewResponse>, Status> {
        let call = Call::start("UpdatePreview");
        let req = request.into_inner();
        let result = async {
            let claimed = self.previews.claim(&req.session_id)?;
            let control = Control::new(Arc::new(AtomicBool::new(false)), None);
            let _cancel_on_drop = CancelOnDrop(control.clone());
            let _running = Running::new(&self.running);
            blocking(move || {
                claimed.run(&control, |s| {
                    s.edit(&req.edits, req.parameters.into_iter().collect())?;
                    s.update(&control, &req.session_id)
                })
            })
            .await
        }
        .await;
        call.answer(result)
    }

    async fn apply_preview(
        &self,
        request: Request<pb::PreviewSessionRequest>,
    ) -> Result<Response<pb::ApplyEffectResponse>, Status> {
        let call = Call::start("ApplyPreview");
        let id = request.into_inner().session_id;
        let result = async {
            let claimed = self.previews.claim(&id)?;
            blocking(move || {
                let response = claimed.run(&Control::none(), |s| s.apply())?;
                claimed.close();
                Ok(response)
            })
            .await
        }
        .await;
        call.answer(result)
    }

    async fn cancel_preview(
        &self,
        request: Request<pb::PreviewSessionRequest>,
    ) -> Result<Response<pb::CancelPreviewResponse>, Status> {
        // Closing a session that is already closed is not an error: Cancel is what a client
        // does when it is unsure.
        self.previews.close(&request.into_inner().session_id);
        Ok(Response::new(pb::CancelPreviewResponse {}))
    }

    async fn apply_effect(
        &self,
        request: Request<pb::ApplyEffectRequest>,
    ) -> Result<Response<pb::ApplyEffectResponse>, Status> {
        let call = Call::start("ApplyEffect");
        let req = request.into_inner();
        let result = async {
            let (prepared, permit) = self.prepare_on_pool(req, &call).await?;
            // When the client cancels the call, tonic drops this future: the guard then
            // sets the cancel flag that the effect polls, so the work stops too.
            let control = Control::new(Arc::new(AtomicBool::new(false)), None);
            let _cancel_on_drop = CancelOnDrop(control.clone());
            let this = self.clone();
            blocking(move || {
                let response = prepared.run(&control, &this);
                drop(permit);
                response
            })
            .await
        }
        .await;
        call.answer(result)
    }

    type ApplyEffectStreamStream = ReceiverStream<Result<pb::ApplyEffectEvent, Status>>;

    async fn apply_effect_stream(
        &self,
        request: Request<pb::ApplyEffectRequest>,
    ) -> Result<Response<Self::ApplyEffectStreamStream>, Status> {
        let call = Call::start("ApplyEffectStream");
        let req = request.into_inner();
        let (prepared, permit) = match self.prepare_on_pool(req, &call).await {
            Ok(p) => p,
            Err(e) => return call.answer(Err(e)),
        };
        // A bounded channel: when the client goes away, the watcher below sets the
        // cancel flag that the effect polls, so the work stops instead of running on.
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHANNEL_CAPACITY);
        let effect = prepared.spec.name;
        let progress_tx = tx.clone();
        // Progress comes from the blocking pool: `try_send` never blocks the effect, and
        // progress events that find the channel full are dropped (the next one follows).
        let control = Control::new(
            Arc::new(AtomicBool::new(false)),
            Some(Arc::new(move |fraction: f64, message: &str| {
                let _ = progress_tx.try_send(Ok(progress_event(fraction, message.to_string())));
            })),
        );
        let watcher = {
            let control = control.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                tx.closed().await;
                control.cancel();
            })
        };
        let this = self.clone();
        tokio::spawn(async move {
            if tx
                .send(Ok(progress_event(0.0, format!("{effect}: started"))))
                .await
                .is_err()
            {
                control.cancel();
                watcher.abort();
                call.end(tonic::Code::Cancelled, "the client went away");
                return;
            }
            let run_control = control.clone();
            let result = blocking(move || {
                let response = prepared.run(&run_control, &this);
                drop(permit);
                response
            })
            .await;
            // Progress 1.0 only before a result; an error ends the stream by itself.
            let event = match result {
                Ok(r) => {
                    if tx
                        .send(Ok(progress_event(1.0, format!("{effect}: done"))))
                        .await
                        .is_err()
                    {
                        watcher.abort();
                        call.end(tonic::Code::Cancelled, "the client went away");
                        return;
                    }
                    Ok(pb::ApplyEffectEvent {
                        event: Some(pb::apply_effect_event::Event::Result(r)),
                    })
                }
                Err(e) => Err(Status::from(e)),
            };
            match &event {
                Ok(_) => call.end(tonic::Code::Ok, ""),
                Err(s) => call.end(s.code(), s.message()),
            }
            let _ = tx.send(event).await;
            watcher.abort();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ExportStream = ReceiverStream<Result<pb::ExportChunk, Status>>;

    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let call = Call::start("Export");
        let exported = match self.export_on_pool(request.into_inner(), &call).await {
            Ok(e) => e,
            Err(e) => return call.answer(Err(e)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHANNEL_CAPACITY);
        tokio::spawn(async move {
            match exported {
                Exported::Path(path) => {
                    let _ = tx
                        .send(Ok(pb::ExportChunk {
                            path,
                            ..Default::default()
                        }))
                        .await;
                    call.end(tonic::Code::Ok, "");
                }
                Exported::Bytes(bytes) => {
                    let total = bytes.len() as u64;
                    call.bytes(total);
                    let bytes = bytes::Bytes::from(bytes);
                    let mut offset = 0;
                    while offset < bytes.len() || offset == 0 {
                        let end = (offset + super::EXPORT_CHUNK_BYTES).min(bytes.len());
                        let chunk = pb::ExportChunk {
                            data: bytes.slice(offset..end),
                            offset: offset as u64,
                            total_bytes: total,
                            path: String::new(),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            call.end(tonic::Code::Cancelled, "the client went away");
                            return;
                        }
                        if end == bytes.len() {
                            break;
                        }
                        offset = end;
                    }
                    call.end(tonic::Code::Ok, "");
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DownloadVolumeStream = ReceiverStream<Result<pb::VolumeChunk, Status>>;

    async fn download_volume(
        &self,
        request: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<Self::DownloadVolumeStream>, Status> {
        let call = Call::start("DownloadVolume");
        let id = request.into_inner().volume_id;
        call.volume(&id);
        let v = match self.volume(&id) {
            Ok(v) => v,
            Err(e) => return call.answer(Err(e)),
        };
        call.lattice(v.volume.size_ijk(), 0);
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHANNEL_CAPACITY);
        tokio::spawn(async move {
            let first = pb::VolumeChunk {
                volume: Some(volume_ref(&v)),
                ..Default::default()
            };
            if tx.send(Ok(first)).await.is_err() {
                call.end(tonic::Code::Cancelled, "the client went away");
                return;
            }
            // One chunk at a time, converted on the blocking pool, so a client that goes
            // away stops the download after at most one chunk.
            let total = v.bytes() as usize;
            call.bytes(total as u64);
            let mut offset = 0;
            while offset < total {
                let end = (offset + super::EXPORT_CHUNK_BYTES).min(total);
                let vv = v.clone();
                let chunk =
                    tokio::task::spawn_blocking(move || vv.volume.le_bytes_range(offset..end))
                        .await
                        .map_err(|e| Status::from(EngineError::Internal(format!("download: {e}"))));
                let msg = chunk.map(|data| pb::VolumeChunk {
                    volume: None,
                    data: data.into(),
                    offset: offset as u64,
                });
                let failed = msg
                    .as_ref()
                    .err()
                    .map(|s| (s.code(), s.message().to_string()));
                if tx.send(msg).await.is_err() {
                    call.end(tonic::Code::Cancelled, "the client went away");
                    return;
                }
                if let Some((code, message)) = failed {
                    call.end(code, &message);
                    return;
                }
                offset = end;
            }
            call.end(tonic::Code::Ok, "");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The calls' work, returning engine errors that the call's answer maps to a status.
impl EngineService {
    async fn upload(
        &self,
        mut stream: Streaming<pb::UploadVolumeRequest>,
        call: &Call,
    ) -> Result<pb::VolumeRef, EngineError> {
        let first = stream
            .next()
            .await
            .ok_or_else(|| {
                EngineError::bad("upload: empty stream, the first message must hold the header")
            })?
            .map_err(EngineError::Client)?;
        let Some(pb::upload_volume_request::Part::Header(header)) = first.part else {
            return Err(EngineError::bad(
                "upload: the first message must hold the header",
            ));
        };
        let (size, geometry) = geometry_from_pb(header.geometry.as_ref(), "upload")?;
        call.lattice(size, 0);
        let scalar = codec::scalar_type_from_pb(header.scalar_type)?;
        let expected = crate::volume::byte_size(&size, scalar.size()).unwrap_or(u64::MAX);
        if header.total_bytes != expected {
            return Err(EngineError::bad(format!(
                "upload: total_bytes is {} but {size:?} voxels of {scalar} need {expected}",
                header.total_bytes
            )));
        }
        if expected > self.cache.limit_bytes() {
            return Err(EngineError::TooLarge(format!(
                "upload: volume of {expected} bytes is larger than the engine's cache of {} bytes",
                self.cache.limit_bytes()
            )));
        }
        // Its room in the cache first (nothing received yet), then working memory for the
        // received bytes and the volume made from them.
        let room = self.cache_room(expected).await?;
        let permit = self.work.reserve(2 * expected, "upload").await?;
        // The size is checked against the cache limit: allocating it is bounded.
        let mut data: Vec<u8> = Vec::with_capacity(expected as usize);
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(EngineError::Client)?;
            let Some(pb::upload_volume_request::Part::Data(chunk)) = msg.part else {
                return Err(EngineError::bad("upload: a header after the first message"));
            };
            if msg.offset != data.len() as u64 {
                return Err(EngineError::bad(format!(
                    "upload: chunk at offset {} but {} bytes were received so far (chunks must come in order)",
                    msg.offset,
                    data.len()
                )));
            }
            if data.len() as u64 + chunk.len() as u64 > expected {
                return Err(EngineError::bad(format!(
                    "upload: chunk of {} bytes at offset {} goes past the declared total of {expected} bytes",
                    chunk.len(),
                    msg.offset
                )));
            }
            data.extend_from_slice(&chunk);
        }
        call.bytes(data.len() as u64);
        if data.len() as u64 != expected {
            return Err(EngineError::bad(format!(
                "upload: received {} bytes, the header declared {expected}",
                data.len()
            )));
        }
        let this = self.clone();
        let name = header.name.clone();
        let vref = blocking(move || {
            let volume = codec::volume_from_bytes(size, geometry, scalar, &data)?;
            drop(data);
            drop(permit);
            this.cache_volume_in(volume, name, Vec::new(), Some(room))
        })
        .await?;
        call.volume(&vref.volume_id);
        Ok(vref)
    }

    async fn open(
        &self,
        req: pb::OpenVolumeRequest,
        call: &Call,
    ) -> Result<pb::VolumeRef, EngineError> {
        if req.path.is_empty() {
            return Err(EngineError::bad("open: path is empty"));
        }
        let path = self.paths.readable(Path::new(&req.path))?;
        let series = (!req.series.is_empty()).then(|| req.series.clone());
        // The headers first: a volume larger than the cache is refused before it is read,
        // and the read waits for working memory like an upload.
        let planned = blocking(move || Ok(OpenOptions::new().series(series).plan(&path)?)).await?;
        let (bytes, cache_limit) = (planned.bytes(), self.cache.limit_bytes());
        if bytes > cache_limit {
            return Err(EngineError::TooLarge(format!(
                "{}: the volume needs {bytes} bytes, more than the engine's cache of \
                 {cache_limit} bytes (segkit serve --cache-mb)",
                req.path
            )));
        }
        let room = self.cache_room(bytes).await?;
        let permit = self.work.reserve(bytes, "opening the volume").await?;
        let this = self.clone();
        let vref = blocking(move || {
            let volume = planned.read()?.into_volume();
            drop(permit);
            this.cache_volume_in(volume, req.path.clone(), Vec::new(), Some(room))
        })
        .await?;
        call.volume(&vref.volume_id);
        Ok(vref)
    }

    async fn start_preview_session(
        &self,
        req: pb::StartPreviewRequest,
        call: &Call,
    ) -> Result<pb::PreviewResponse, EngineError> {
        call.volume(&req.volume_id);
        call.effect(&req.effect);
        let this = self.clone();
        let claimed = blocking(move || {
            let session = this.prepare_preview(req)?;
            Ok(this.previews.open(session))
        })
        .await?;
        let control = Control::new(Arc::new(AtomicBool::new(false)), None);
        let _cancel_on_drop = CancelOnDrop(control.clone());
        let _running = Running::new(&self.running);
        blocking(move || {
            let id = claimed.id.clone();
            let result = claimed.run(&control, |s| s.update(&control, &id));
            // The client learns the session's id only from a successful start.
            if result.is_err() || control.is_cancelled() {
                claimed.close();
            }
            result
        })
        .await
    }

    /// Checks an effect request against the limits, waits for room to run it, and decodes
    /// it on the blocking pool.
    async fn prepare_on_pool(
        &self,
        req: pb::ApplyEffectRequest,
        call: &Call,
    ) -> Result<(Prepared, WorkPermit), EngineError> {
        call.volume(&req.volume_id);
        call.effect(&req.effect);
        let spec = catalog::find(&req.effect)?;
        // Looked up once: the source stays held while the call waits for room, so it
        // cannot be evicted between the check and the run.
        let reference = self.reference(&spec, &req.volume_id, &req.segments)?;
        let size = reference.1;
        call.lattice(size, req.segments.len());
        let permit = self
            .work
            .reserve(effect_bytes(size, req.segments.len()), "the effect")
            .await?;
        let this = self.clone();
        let prepared = blocking(move || this.prepare(req, spec, reference)).await?;
        Ok((prepared, permit))
    }

    async fn export_on_pool(
        &self,
        req: pb::ExportRequest,
        call: &Call,
    ) -> Result<Exported, EngineError> {
        call.volume(&req.volume_id);
        let format = pb::ExportFormat::try_from(req.format)
            .ok()
            .filter(|f| *f != pb::ExportFormat::Unspecified)
            .ok_or_else(|| EngineError::bad(format!("export: unknown format {}", req.format)))?;
        let lattice = if req.volume_id.is_empty() {
            let first = req
                .segments
                .first()
                .and_then(|s| s.mask.as_ref())
                .ok_or_else(|| {
                    EngineError::bad("export: no volume_id and no segment to take the lattice from")
                })?;
            geometry_from_pb(first.geometry.as_ref(), "export")?
        } else {
            let v = self.volume(&req.volume_id)?;
            (v.volume.size_ijk(), *v.volume.geometry())
        };
        call.lattice(lattice.0, req.segments.len());
        let target = if req.path.is_empty() {
            None
        } else {
            let path = Path::new(&req.path);
            check_export_path(path, format)?;
            Some(self.paths.writable(path)?)
        };
        let _permit = self
            .work
            .reserve(export_bytes(lattice.0, req.segments.len()), "the export")
            .await?;
        blocking(move || export(&req, format, lattice, target)).await
    }
}

fn progress_event(fraction: f64, message: String) -> pb::ApplyEffectEvent {
    pb::ApplyEffectEvent {
        event: Some(pb::apply_effect_event::Event::Progress(pb::Progress {
            fraction,
            message,
        })),
    }
}

/// Counts an effect computation while it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Running(counter.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sets a request's cancel flag when dropped (the client cancelled the unary call).
struct CancelOnDrop(Control);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// An effect request, decoded and checked, ready to run off the async runtime.
struct Prepared {
    spec: EffectSpec,
    source: Option<Arc<CachedVolume>>,
    geometry: Geometry,
    segments: SegmentMasks,
    names: Vec<String>,
    ids: Vec<String>,
    selected: Option<usize>,
    selected_id: String,
    points_kji: Vec<[usize; 3]>,
    parameters: BTreeMap<String, String>,
    masking: Option<Masking>,
    effect_masking: Option<Masking>,
    encoding: pb::MaskEncoding,
    /// Answer the reported values only (`ApplyEffectRequest.report_only`).
    report_only: bool,
}

/// A request's source volume (if any), and its reference lattice's size and geometry.
type Reference = (Option<Arc<CachedVolume>>, [usize; 3], Geometry);

impl EngineService {
    /// The source volume a request names (refused when the effect needs one and none is
    /// named) and the reference lattice: the source's, else the first segment's.
    fn reference(
        &self,
        spec: &EffectSpec,
        volume_id: &str,
        segments: &[pb::SegmentMask],
    ) -> Result<Reference, EngineError> {
        let source = if volume_id.is_empty() {
            if spec.inputs.contains(&Input::SourceVolume) {
                return Err(EngineError::bad(format!(
                    "{} needs a source volume: set volume_id",
                    spec.name
                )));
            }
            None
        } else {
            Some(self.volume(volume_id)?)
        };
        let (size, geometry) = match &source {
            Some(v) => (v.volume.size_ijk(), *v.volume.geometry()),
            None => {
                let first = segments
                    .first()
                    .and_then(|s| s.mask.as_ref())
                    .ok_or_else(|| {
                        EngineError::bad("no volume_id and no segment: nothing gives the lattice")
                    })?;
                geometry_from_pb(first.geometry.as_ref(), "segment 0")?
            }
        };
        Ok((source, size, geometry))
    }

    fn prepare_preview(&self, req: pb::StartPreviewRequest) -> Result<PreviewSession, EngineError> {
        let (spec, effect) = catalog::find_auto_complete(&req.effect)
            .map_err(|e| EngineError::bad(e.to_string()))?;
        let (source, size, geometry) = self.reference(&spec, &req.volume_id, &req.segments)?;
        let (segments, ids) = segments_from_pb(&req.segments, size, &geometry)?;
        let selected = ids.iter().position(|id| *id == req.selected_segment_id);
        if !req.selected_segment_id.is_empty() && selected.is_none() {
            return Err(EngineError::bad(format!(
                "selected_segment_id {:?} is not among the segments sent",
                req.selected_segment_id
            )));
        }
        let masking = req
            .masking
            .as_ref()
            .map(|m| masking_from_pb(Some(m), &ids))
            .transpose()?;
        let parameters: BTreeMap<String, String> = req.parameters.into_iter().collect();
        crate::effects::ParamValues::new(&spec, &parameters)
            .map_err(|e| EngineError::bad(e.to_string()))?;
        let encoding = match pb::MaskEncoding::try_from(req.result_encoding) {
            Ok(pb::MaskEncoding::Bits) => pb::MaskEncoding::Bits,
            _ => pb::MaskEncoding::Runs,
        };
        Ok(PreviewSession::new(
            spec, effect, source, geometry, segments, ids, selected, parameters, masking, encoding,
        ))
    }

    fn prepare(
        &self,
        req: pb::ApplyEffectRequest,
        spec: EffectSpec,
        reference: Reference,
    ) -> Result<Prepared, EngineError> {
        let (source, size, geometry) = reference;
        let mut segments = SegmentMasks {
            masks: Vec::with_capacity(req.segments.len()),
            visible: Vec::with_capacity(req.segments.len()),
        };
        let mut names = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for (n, s) in req.segments.iter().enumerate() {
            let what = format!("segment {n} ({:?})", s.id);
            if ids.contains(&s.id) {
                return Err(EngineError::bad(format!("{what}: the id is used twice")));
            }
            let mask = match &s.mask {
                Some(m) => mask_from_pb(m, size, &geometry, &what)?,
                None => Array3::zeros((size[2], size[1], size[0])),
            };
            segments.masks.push(mask);
            segments.visible.push(s.visible);
            names.push(s.name.clone());
            ids.push(s.id.clone());
        }
        let selected = ids.iter().position(|id| *id == req.selected_segment_id);
        let mut points_kji = Vec::with_capacity(1 + req.points.len());
        for (n, p) in req.point.iter().chain(&req.points).enumerate() {
            let kji = match p.position {
                None => continue,
                Some(pb::point::Position::Ijk(p)) => [p.k as usize, p.j as usize, p.i as usize],
                Some(pb::point::Position::Lps(p)) => geometry
                    .nearest_voxel_kji([p.x, p.y, p.z], size)
                    .map_err(|e| EngineError::bad(format!("point {n}: {e}")))?,
            };
            points_kji.push(kji);
        }
        // The masking settings the client sent: applied to the result with
        // apply_masking, and given to effects whose algorithm stops at locked voxels.
        let effect_masking = req
            .masking
            .as_ref()
            .map(|m| masking_from_pb(Some(m), &ids))
            .transpose()?;
        let masking = if req.apply_masking {
            Some(masking_from_pb(req.masking.as_ref(), &ids)?)
        } else {
            None
        };
        let encoding = match pb::MaskEncoding::try_from(req.result_encoding) {
            Ok(pb::MaskEncoding::Bits) => pb::MaskEncoding::Bits,
            _ => pb::MaskEncoding::Runs,
        };
        Ok(Prepared {
            spec,
            source,
            geometry,
            segments,
            names,
            ids,
            selected,
            selected_id: req.selected_segment_id,
            points_kji,
            parameters: req.parameters.into_iter().collect(),
            masking,
            effect_masking,
            encoding,
            report_only: req.report_only,
        })
    }
}

impl Prepared {
    fn run(
        mut self,
        control: &Control,
        engine: &EngineService,
    ) -> Result<pb::ApplyEffectResponse, EngineError> {
        let _running = Running::new(&engine.running);
        let started = Instant::now();
        let output = catalog::run(
            self.spec.name,
            &RunInput {
                source: self.source.as_ref().map(|v| &*v.volume),
                geometry: &self.geometry,
                segments: &self.segments.masks,
                visible: &self.segments.visible,
                segment_ids: &self.ids,
                selected: self.selected,
                points_kji: &self.points_kji,
                parameters: &self.parameters,
                control,
                masking: self.effect_masking.as_ref(),
            },
        )
        .map_err(EngineError::from)?;
        let compute_seconds = started.elapsed().as_secs_f64();
        if self.report_only {
            return Ok(pb::ApplyEffectResponse {
                reported: output.reported.iter().cloned().collect(),
                compute_seconds,
                ..Default::default()
            });
        }
        let source_name = self
            .source
            .as_ref()
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let mut volumes = Vec::with_capacity(output.volumes.len());
        for v in &output.volumes {
            let name = format!("{source_name}{}", v.name);
            let mut vref = engine.cache_volume(v.volume.clone(), name.clone(), Vec::new())?;
            // The cache answers the entry it already held for the same voxels (named after
            // whoever brought them first); this answer names this effect's output.
            if let Some(h) = vref.header.as_mut() {
                h.name = name;
            }
            volumes.push(vref);
        }
        let selected_name = self
            .selected
            .map(|n| self.names[n].clone())
            .unwrap_or_else(|| self.selected_id.clone());
        let mut response = pb::ApplyEffectResponse {
            modifiers: modifiers_to_pb(
                &output,
                &selected_name,
                &self.ids,
                &self.geometry,
                self.encoding,
            ),
            reported: output.reported.iter().cloned().collect(),
            segments: Vec::new(),
            compute_seconds,
            volumes,
        };
        if let Some(masking) = &self.masking {
            let (changed, selected) = apply_output(
                &mut self.segments,
                &mut self.names,
                self.selected,
                &selected_name,
                &output,
                masking,
                self.source.as_ref().map(|v| &*v.volume),
            )
            .map_err(EngineError::from)?;
            for n in changed {
                let id = match self.ids.get(n) {
                    Some(id) => id.clone(),
                    None if Some(n) == selected => self.selected_id.clone(),
                    None => self.names[n].clone(),
                };
                response.segments.push(pb::SegmentMask {
                    id,
                    name: self.names[n].clone(),
                    visible: self.segments.visible[n],
                    mask: Some(mask_to_pb(
                        self.segments.masks[n].view(),
                        &self.geometry,
                        self.encoding,
                    )),
                    color: Vec::new(),
                    label_value: 0,
                });
            }
        }
        Ok(response)
    }
}

pub(super) fn modifiers_to_pb(
    output: &EffectOutput,
    selected_name: &str,
    ids: &[String],
    g: &Geometry,
    encoding: pb::MaskEncoding,
) -> Vec<pb::Modifier> {
    output
        .modifiers
        .iter()
        .map(|m| {
            let mut named = (false, Vec::new(), String::new());
            let (new_segment, new_segment_name, target_segment_id) = match &m.target {
                Target::Selected => (false, String::new(), String::new()),
                Target::NewSegment { suffix } => {
                    (true, format!("{selected_name}{suffix}"), String::new())
                }
                Target::Segment(n) => (false, String::new(), ids[*n].clone()),
                Target::Named {
                    name,
                    color,
                    terminology,
                } => {
                    named = (true, color.to_vec(), terminology.clone());
                    (true, name.clone(), String::new())
                }
            };
            pb::Modifier {
                new_segment,
                new_segment_name,
                target_segment_id,
                reuse_named_segment: named.0,
                new_segment_color: named.1,
                new_segment_terminology: named.2,
                bypass_masking: m.bypass_masking,
                overwrite_mode: m.overwrite.map(|o| {
                    (match o {
                        OverwriteMode::AllSegments => pb::OverwriteMode::AllSegments,
                        OverwriteMode::VisibleSegments => pb::OverwriteMode::VisibleSegments,
                        OverwriteMode::None => pb::OverwriteMode::None,
                    }) as i32
                }),
                mode: match m.mode {
                    ModificationMode::Set => pb::ModificationMode::Set,
                    ModificationMode::Add => pb::ModificationMode::Add,
                    ModificationMode::Remove => pb::ModificationMode::Remove,
                    ModificationMode::RemoveAll => pb::ModificationMode::RemoveAll,
                } as i32,
                mask: Some(mask_to_pb(m.mask.view(), g, encoding)),
            }
        })
        .collect()
}

fn masking_from_pb(m: Option<&pb::Masking>, ids: &[String]) -> Result<Masking, EngineError> {
    let default = pb::Masking::default();
    let m = m.unwrap_or(&default);
    let mask_mode = match pb::MaskMode::try_from(m.mask_mode) {
        Ok(pb::MaskMode::Everywhere) => MaskMode::Everywhere,
        Ok(pb::MaskMode::InsideAllSegments) => MaskMode::InsideAllSegments,
        Ok(pb::MaskMode::InsideVisibleSegments) => MaskMode::InsideVisibleSegments,
        Ok(pb::MaskMode::OutsideAllSegments) => MaskMode::OutsideAllSegments,
        Ok(pb::MaskMode::OutsideVisibleSegments) => MaskMode::OutsideVisibleSegments,
        Ok(pb::MaskMode::InsideSingleSegment) => {
            let n = ids
                .iter()
                .position(|id| *id == m.mask_segment_id)
                .ok_or_else(|| {
                    EngineError::bad(format!(
                        "masking: mask_segment_id {:?} is not among the segments sent",
                        m.mask_segment_id
                    ))
                })?;
            MaskMode::InsideSingleSegment(n)
        }
        Err(_) => {
            return Err(EngineError::bad(format!(
                "masking: unknown mask_mode {}",
                m.mask_mode
            )))
        }
    };
    let overwrite_mode = match pb::OverwriteMode::try_from(m.overwrite_mode) {
        Ok(pb::OverwriteMode::AllSegments) => OverwriteMode::AllSegments,
        Ok(pb::OverwriteMode::VisibleSegments) => OverwriteMode::VisibleSegments,
        Ok(pb::OverwriteMode::None) => OverwriteMode::None,
        Err(_) => {
            return Err(EngineError::bad(format!(
                "masking: unknown overwrite_mode {}",
                m.overwrite_mode
            )))
        }
    };
    Ok(Masking {
        mask_mode,
        overwrite_mode,
        intensity_range: m
            .intensity_range_enabled
            .then_some((m.intensity_minimum, m.intensity_maximum)),
    })
}

fn effect_to_pb(e: &EffectSpec) -> pb::EffectInfo {
    let input = |i: &Input| {
        (match i {
            Input::SourceVolume => pb::EffectInput::SourceVolume,
            Input::SelectedSegment => pb::EffectInput::SelectedSegment,
            Input::VisibleSegments => pb::EffectInput::VisibleSegments,
            Input::Point => pb::EffectInput::Point,
            Input::PointList => pb::EffectInput::PointList,
            Input::AllSegments => pb::EffectInput::AllSegments,
        }) as i32
    };
    pb::EffectInfo {
        name: e.name.into(),
        cli_name: e.cli_name.into(),
        title: e.title.into(),
        help: e.help.into(),
        parameters: e
            .params
            .iter()
            .map(|p| pb::ParameterInfo {
                name: p.name.into(),
                title: p.title.into(),
                help: p.help.into(),
                r#type: match p.kind {
                    ParamType::Double => pb::ParameterType::Double,
                    ParamType::Integer => pb::ParameterType::Integer,
                    ParamType::Boolean => pb::ParameterType::Boolean,
                    ParamType::Choice(_) => pb::ParameterType::Choice,
                    ParamType::Segment => pb::ParameterType::Segment,
                } as i32,
                default_value: p.default.into(),
                minimum: p.minimum,
                maximum: p.maximum,
                step: p.step,
                unit: p.unit.into(),
                choices: match &p.kind {
                    ParamType::Choice(c) => c
                        .iter()
                        .map(|c| pb::Choice {
                            value: c.value.into(),
                            title: c.title.into(),
                            help: c.help.into(),
                            inputs: c.inputs.iter().map(input).collect(),
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                default_from_source: match p.default_from_source {
                    None => pb::SourceDerived::None,
                    Some(FromSource::Minimum) => pb::SourceDerived::Minimum,
                    Some(FromSource::Maximum) => pb::SourceDerived::Maximum,
                    Some(FromSource::QuarterRange) => pb::SourceDerived::QuarterRange,
                } as i32,
                range_from_source: p.range_from_source,
                visible_when_parameter: p
                    .visible_when
                    .as_ref()
                    .map(|v| v.0.to_string())
                    .unwrap_or_default(),
                visible_when_values: p
                    .visible_when
                    .as_ref()
                    .map(|v| v.1.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect(),
        inputs: e.inputs.iter().map(input).collect(),
        long_running: e.long_running,
        produces_volume: e.produces_volume,
        preview: e.preview,
        range_minimum_parameter: e.intensity_range.map(|r| r.0).unwrap_or_default().into(),
        range_maximum_parameter: e.intensity_range.map(|r| r.1).unwrap_or_default().into(),
        auto_range_parameter: e.auto_range.unwrap_or_default().into(),
        reported: e
            .reported
            .iter()
            .map(|(name, help)| pb::ReportedValueInfo {
                name: name.to_string(),
                help: help.to_string(),
            })
            .collect(),
    }
}

enum Exported {
    Path(String),
    Bytes(Vec<u8>),
}

/// The file name ending of an export format.
fn export_suffix(format: pb::ExportFormat) -> &'static str {
    match format {
        pb::ExportFormat::LabelNrrd => "-label.nrrd",
        pb::ExportFormat::SegNrrd => ".seg.nrrd",
        pb::ExportFormat::NiftiGz | pb::ExportFormat::Unspecified => ".nii.gz",
    }
}

/// Checks a client's export path: absolute, in an existing folder, with the format's ending.
fn check_export_path(path: &Path, format: pb::ExportFormat) -> Result<(), EngineError> {
    if !path.is_absolute() {
        return Err(EngineError::bad(format!(
            "export: path {} is relative; give an absolute path on the engine's machine",
            path.display()
        )));
    }
    match path.parent() {
        Some(dir) if dir.is_dir() => {}
        _ => {
            return Err(EngineError::bad(format!(
                "export: the folder of {} does not exist on the engine's machine",
                path.display()
            )))
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let wanted = export_suffix(format).trim_start_matches('-');
    if !name.ends_with(wanted) {
        return Err(EngineError::bad(format!(
            "export: path {} does not end with {wanted} as the format asks",
            path.display()
        )));
    }
    Ok(())
}

/// Writes the segments in `format` to `target` (checked and resolved by the caller), or to
/// bytes when there is none.
fn export(
    req: &pb::ExportRequest,
    format: pb::ExportFormat,
    lattice: ([usize; 3], Geometry),
    target: Option<PathBuf>,
) -> Result<Exported, EngineError> {
    let (size, geometry) = lattice;
    let segmentation = segmentation_from_pb(&req.segments, size, &geometry)?;
    let labels = labelmap_by_value(&segmentation);
    let write = |path: &Path| -> Result<(), Error> {
        match format {
            pb::ExportFormat::SegNrrd => io::nrrd::write_segmentation(path, &segmentation),
            pb::ExportFormat::LabelNrrd => io::nrrd::write_labelmap(path, &labels),
            _ => io::write(path, Dataset::Volume(as_short(labels.clone())), path),
        }
    };
    if let Some(target) = target {
        // Written beside the target, then renamed over it (io::atomic).
        write(&target)?;
        return Ok(Exported::Path(req.path.clone()));
    }
    let dir = TempDir::new()?;
    let path = dir.0.join(format!("export{}", export_suffix(format)));
    write(&path)?;
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok(Exported::Bytes(bytes))
}

/// The segments flattened with their own label values (by default their position + 1, as
/// Slicer's export numbers them); where segments overlap the later one wins.
fn labelmap_by_value(s: &Segmentation) -> crate::volume::Labelmap {
    let [ni, nj, nk] = s.size_ijk();
    let mut out = Array3::<u16>::zeros((nk, nj, ni));
    for seg in &s.segments {
        if let Some(layer) = s.layers.get(seg.layer) {
            ndarray::Zip::from(&mut out).and(layer).for_each(|o, &v| {
                if v == seg.label_value {
                    *o = seg.label_value;
                }
            });
        }
    }
    crate::volume::Volume::new(out, s.geometry)
}

/// A label map as Slicer exports it: `short` voxels when the labels fit.
fn as_short(lm: crate::volume::Labelmap) -> AnyVolume {
    if lm.data.iter().all(|&v| v <= i16::MAX as u16) {
        AnyVolume::I16(crate::volume::Volume::new(
            lm.data.mapv(|v| v as i16),
            lm.geometry,
        ))
    } else {
        AnyVolume::U16(lm)
    }
}

/// Segments into a segmentation, sharing layers where they do not overlap (as Slicer
/// does), each keeping its label value when one is given.
fn segmentation_from_pb(
    segs: &[pb::SegmentMask],
    size: [usize; 3],
    g: &Geometry,
) -> Result<Segmentation, EngineError> {
    let shape = (size[2], size[1], size[0]);
    let mut layers: Vec<Array3<u16>> = Vec::new();
    let mut segments = Vec::new();
    for (n, s) in segs.iter().enumerate() {
        let what = format!("segment {n} ({:?})", s.id);
        let mask = match &s.mask {
            Some(m) => mask_from_pb(m, size, g, &what)?,
            None => Array3::zeros(shape),
        };
        let wanted = if s.label_value > 0 {
            u16::try_from(s.label_value).map_err(|_| {
                EngineError::bad(format!("{what}: label_value {} above 65535", s.label_value))
            })?
        } else {
            (n + 1).min(u16::MAX as usize) as u16
        };
        // First layer where the segment's voxels are free and its label is unused.
        let layer = layers.iter().position(|l| {
            !l.iter().any(|&v| v == wanted)
                && ndarray::Zip::from(l)
                    .and(&mask)
                    .all(|&v, &m| m == 0 || v == 0)
        });
        let layer = match layer {
            Some(l) => l,
            None => {
                layers.push(Array3::zeros(shape));
                layers.len() - 1
            }
        };
        ndarray::Zip::from(&mut layers[layer])
            .and(&mask)
            .for_each(|v, &m| {
                if m != 0 {
                    *v = wanted;
                }
            });
        let mut seg = Segment::new(s.id.clone(), s.name.clone(), wanted, layer);
        if let [r, gg, b] = s.color.as_slice() {
            seg.color = [*r, *gg, *b];
            seg.color_auto_generated = false;
        }
        segments.push(seg);
    }
    if layers.is_empty() {
        layers.push(Array3::zeros(shape));
    }
    Ok(Segmentation {
        geometry: *g,
        layers,
        segments,
        extent_offset: [0; 3],
        extra_fields: Vec::new(),
    })
}

/// A private temporary folder with an unpredictable name, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TempDir {
    fn new() -> Result<TempDir, EngineError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| EngineError::Internal(format!("export: no random bytes: {e}")))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("segkit-export-{name}"));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create`, not `create_all`: a folder already there (planted) is an error.
        builder.create(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(TempDir(dir))
    }
}

//! Preview sessions of the auto-complete effects: the engine's side of Slicer's
//! Initialize / auto-update / Apply / Cancel.
//!
//! A session holds what the client sent at the start (every segment's mask, the masking,
//! the parameters), keeps it up to date with the seed edits of each update, and holds the
//! algorithm's state ([`Session`]) so that an update continues from the previous result.
//! Sessions are bounded in number and in memory (the least recently used goes first) and
//! closed after [`IDLE_SECONDS`] without a request.

use super::cache::CachedVolume;
use super::codec::{mask_cropped_from_pb, mask_from_pb, mask_part_to_pb};
use super::pb;
use super::EngineError;
use crate::effects::auto_complete::{AutoComplete, Session, SessionInput};
use crate::effects::masking::{Masking, SegmentMasks};
use crate::effects::{Control, EffectSpec, ParamValues};
use crate::volume::Geometry;
use ndarray::{s, Array3, Zip};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most sessions open at once; starting one more closes the least recently used.
pub const MAX_SESSIONS: usize = 8;
/// A session without a request for this long is closed.
pub const IDLE_SECONDS: u64 = 30 * 60;

/// One open preview.
pub struct PreviewSession {
    pub spec: EffectSpec,
    effect: &'static dyn AutoComplete,
    source: Option<Arc<CachedVolume>>,
    geometry: Geometry,
    segments: SegmentMasks,
    ids: Vec<String>,
    selected: Option<usize>,
    parameters: BTreeMap<String, String>,
    masking: Option<Masking>,
    encoding: pb::MaskEncoding,
    session: Option<Session>,
}

/// A session in the store, with the control of its running update (to cancel it).
struct Entry {
    session: Arc<Mutex<PreviewSession>>,
    running: Arc<Mutex<Option<Control>>>,
    last_used: Instant,
    bytes: usize,
}

/// The open sessions.
#[derive(Clone)]
pub struct PreviewStore {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    next_id: Arc<AtomicU64>,
    limit_bytes: u64,
}

impl std::fmt::Debug for PreviewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewStore")
            .field("open", &self.lock().len())
            .field("limit_bytes", &self.limit_bytes)
            .finish()
    }
}

/// What an update or a start does with the session, handed to the blocking pool.
pub struct Claimed {
    pub id: String,
    session: Arc<Mutex<PreviewSession>>,
    running: Arc<Mutex<Option<Control>>>,
    store: PreviewStore,
}

impl PreviewStore {
    /// A store whose sessions hold at most `limit_bytes` together.
    pub fn new(limit_bytes: u64) -> Self {
        PreviewStore {
            entries: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(1)),
            limit_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Opens a session and closes idle ones, and the least recently used ones beyond
    /// [`MAX_SESSIONS`].
    pub fn open(&self, session: PreviewSession) -> Claimed {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let id = format!(
            "preview-{}-{:08x}",
            self.next_id.fetch_add(1, Ordering::Relaxed),
            nanos ^ std::process::id()
        );
        let bytes = session.bytes();
        let session = Arc::new(Mutex::new(session));
        let running = Arc::new(Mutex::new(None));
        let mut entries = self.lock();
        close_idle(&mut entries);
        while entries.len() >= MAX_SESSIONS {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some(gone) = entries.remove(&oldest) {
                cancel(&gone);
            }
        }
        entries.insert(
            id.clone(),
            Entry {
                session: session.clone(),
                running: running.clone(),
                last_used: Instant::now(),
                bytes,
            },
        );
        Claimed {
            id,
            session,
            running,
            store: self.clone(),
        }
    }

    /// The session `id`, marked as used now.
    ///
    /// # Errors
    /// NOT_FOUND when there is no such session (closed, applied, idle too long, or the
    /// engine restarted).
    pub fn claim(&self, id: &str) -> Result<Claimed, EngineError> {
        let mut entries = self.lock();
        close_idle(&mut entries);
        let entry = entries.get_mut(id).ok_or_else(|| not_found(id))?;
        entry.last_used = Instant::now();
        Ok(Claimed {
            id: id.to_string(),
            session: entry.session.clone(),
            running: entry.running.clone(),
            store: self.clone(),
        })
    }

    /// Closes session `id`, cancelling its running update; answers whether it was open.
    pub fn close(&self, id: &str) -> bool {
        match self.lock().remove(id) {
            Some(entry) => {
                cancel(&entry);
                true
            }
            None => false,
        }
    }

    /// Records a session's memory after an update and closes the least recently used
    /// other sessions while the total is over the limit.
    fn account(&self, id: &str, bytes: usize) {
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(id) {
            e.bytes = bytes;
        }
        loop {
            let total: u64 = entries.values().map(|e| e.bytes as u64).sum();
            if total <= self.limit_bytes {
                break;
            }
            let Some(oldest) = entries
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some(gone) = entries.remove(&oldest) {
                cancel(&gone);
            }
        }
    }
}

fn not_found(id: &str) -> EngineError {
    EngineError::not_found(format!(
        "preview session {id:?} is not open (applied, cancelled, closed after {} minutes idle \
         or to make room, or the engine restarted): start the preview again",
        IDLE_SECONDS / 60
    ))
}

fn cancel(entry: &Entry) {
    if let Some(c) = entry
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        c.cancel();
    }
}

fn close_idle(entries: &mut HashMap<String, Entry>) {
    let idle = Duration::from_secs(IDLE_SECONDS);
    entries.retain(|_, e| {
        let keep = e.last_used.elapsed() < idle;
        if !keep {
            cancel(e);
        }
        keep
    });
}

impl Claimed {
    /// Runs `f` on the session with `control` registered as its running update, then
    /// records the session's memory.
    pub fn run<T>(
        &self,
        control: &Control,
        f: impl FnOnce(&mut PreviewSession) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(control.clone());
        let result = f(&mut session);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let bytes = session.bytes();
        drop(session);
        self.store.account(&self.id, bytes);
        result
    }

    /// Closes the session.
    pub fn close(&self) {
        self.store.close(&self.id);
    }
}

impl PreviewSession {
    /// A session from a decoded start request.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: EffectSpec,
        effect: &'static dyn AutoComplete,
        source: Option<Arc<CachedVolume>>,
        geometry: Geometry,
        segments: SegmentMasks,
        ids: Vec<String>,
        selected: Option<usize>,
        parameters: BTreeMap<String, String>,
        masking: Option<Masking>,
        encoding: pb::MaskEncoding,
    ) -> Self {
        PreviewSession {
            spec,
            effect,
            source,
            geometry,
            segments,
            ids,
            selected,
            parameters,
            masking,
            encoding,
            session: None,
        }
    }

    /// Memory held: the segments and the algorithm's state (the source is the cache's).
    pub fn bytes(&self) -> usize {
        self.segments.masks.iter().map(|m| m.len()).sum::<usize>()
            + self.session.as_ref().map_or(0, |s| s.bytes())
    }

    fn shape(&self) -> (usize, usize, usize) {
        match &self.source {
            Some(v) => {
                let [i, j, k] = v.volume.size_ijk();
                (k, j, i)
            }
            None => self.segments.masks.first().map_or((0, 0, 0), |m| m.dim()),
        }
    }

    /// Applies seed edits and changed parameters.
    ///
    /// # Errors
    /// An unknown segment id, a mask on another lattice, a parameter the effect does not
    /// have or whose value does not fit.
    pub fn edit(
        &mut self,
        edits: &[pb::SeedEdit],
        parameters: BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let (nk, nj, ni) = self.shape();
        let size = [ni, nj, nk];
        // Check everything before changing anything.
        let mut decoded = Vec::with_capacity(edits.len());
        for (n, e) in edits.iter().enumerate() {
            let segment = self
                .ids
                .iter()
                .position(|id| *id == e.segment_id)
                .ok_or_else(|| {
                    EngineError::bad(format!(
                        "edit {n}: segment id {:?} is not among the session's segments",
                        e.segment_id
                    ))
                })?;
            let mut parts = Vec::new();
            for (mask, value, what) in [(&e.removed, 0u8, "removed"), (&e.added, 1u8, "added")] {
                if let Some(m) = mask {
                    let what = format!("edit {n} ({:?}) {what}", e.segment_id);
                    if let Some(part) = mask_cropped_from_pb(m, size, &self.geometry, &what)? {
                        parts.push((part, value));
                    }
                }
            }
            decoded.push((segment, parts));
        }
        let mut merged = self.parameters.clone();
        merged.extend(parameters);
        ParamValues::new(&self.spec, &merged).map_err(|e| EngineError::bad(e.to_string()))?;
        self.parameters = merged;
        for (segment, parts) in decoded {
            let target = &mut self.segments.masks[segment];
            for ((lo, part), value) in parts {
                let (a, b, c) = part.dim();
                Zip::from(target.slice_mut(s![
                    lo[0]..lo[0] + a,
                    lo[1]..lo[1] + b,
                    lo[2]..lo[2] + c
                ]))
                .and(&part)
                .for_each(|t, &p| {
                    if p != 0 {
                        *t = value;
                    }
                });
            }
        }
        Ok(())
    }

    /// Computes the preview for the session's segments as they are now.
    ///
    /// # Errors
    /// Too few input segments, a cancelled update, the algorithm's errors.
    pub fn update(
        &mut self,
        control: &Control,
        id: &str,
    ) -> Result<pb::PreviewResponse, EngineError> {
        let started = Instant::now();
        let params = ParamValues::new(&self.spec, &self.parameters)
            .map_err(|e| EngineError::bad(e.to_string()))?;
        let input = SessionInput {
            source: self.source.as_ref().map(|v| &*v.volume),
            geometry: &self.geometry,
            segments: &self.segments.masks,
            visible: &self.segments.visible,
            selected: self.selected,
            params: &params,
            masking: self.masking.as_ref(),
            control,
        };
        if self.session.is_none() {
            self.session = Some(
                Session::start(self.effect, self.spec.name, &input).map_err(EngineError::from)?,
            );
        }
        let session = self.session.as_mut().expect("just started");
        let result = session.update(&input).map_err(EngineError::from)?;
        let (nk, nj, ni) = self.segments.masks.first().map_or((0, 0, 0), |m| m.dim());
        let size = [ni, nj, nk];
        let mut response = pb::PreviewResponse {
            session_id: id.to_string(),
            ..Default::default()
        };
        let Some(result) = result else {
            response.empty = true;
            response.compute_seconds = started.elapsed().as_secs_f64();
            return Ok(response);
        };
        let b = result.bbox;
        response.working_box = Some(pb::Extent {
            i_min: b.lo[2] as u32,
            i_max: b.hi[2].saturating_sub(1) as u32,
            j_min: b.lo[1] as u32,
            j_max: b.hi[1].saturating_sub(1) as u32,
            k_min: b.lo[0] as u32,
            k_max: b.hi[0].saturating_sub(1) as u32,
        });
        response.reset = result.reset;
        for (n, &segment) in result.inputs.iter().enumerate() {
            let label = (n + 1) as u16;
            let mask: Array3<u8> = result.labels.mapv(|l| u8::from(l == label));
            response.segments.push(pb::SegmentMask {
                id: self.ids[segment].clone(),
                name: String::new(),
                visible: true,
                mask: Some(mask_part_to_pb(
                    mask.view(),
                    b.lo,
                    size,
                    &self.geometry,
                    self.encoding,
                )),
                color: Vec::new(),
                label_value: label as u32,
            });
        }
        response.compute_seconds = started.elapsed().as_secs_f64();
        Ok(response)
    }

    /// The modifiers that write the last preview into the segments.
    ///
    /// # Errors
    /// FAILED_PRECONDITION before any preview was computed.
    pub fn apply(&self) -> Result<pb::ApplyEffectResponse, EngineError> {
        let modifiers = self
            .session
            .as_ref()
            .map(|s| s.modifiers())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                EngineError::NotReady(
                    "the preview has no result to apply yet (every input segment was empty, or \
                     the last update was cancelled): update it first"
                        .to_string(),
                )
            })?;
        let output = crate::effects::EffectOutput {
            modifiers,
            ..Default::default()
        };
        Ok(pb::ApplyEffectResponse {
            modifiers: super::engine::modifiers_to_pb(
                &output,
                "",
                &self.ids,
                &self.geometry,
                self.encoding,
            ),
            ..Default::default()
        })
    }
}

/// Decodes the segments of a start request onto the lattice `(size, geometry)`.
///
/// # Errors
/// A repeated id, a mask on another lattice.
pub fn segments_from_pb(
    segments: &[pb::SegmentMask],
    size: [usize; 3],
    geometry: &Geometry,
) -> Result<(SegmentMasks, Vec<String>), EngineError> {
    let mut masks = SegmentMasks {
        masks: Vec::with_capacity(segments.len()),
        visible: Vec::with_capacity(segments.len()),
    };
    let mut ids: Vec<String> = Vec::with_capacity(segments.len());
    for (n, s) in segments.iter().enumerate() {
        let what = format!("segment {n} ({:?})", s.id);
        if ids.contains(&s.id) {
            return Err(EngineError::bad(format!("{what}: the id is used twice")));
        }
        let mask = match &s.mask {
            Some(m) => mask_from_pb(m, size, geometry, &what)?,
            None => Array3::zeros((size[2], size[1], size[0])),
        };
        masks.masks.push(mask);
        masks.visible.push(s.visible);
        ids.push(s.id.clone());
    }
    Ok((masks, ids))
}

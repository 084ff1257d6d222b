//! The engine's volume cache: volumes by content-derived id, bounded in bytes, least
//! recently used out first.
//!
//! A client that names an id the cache no longer holds gets `NOT_FOUND` and uploads the
//! volume again, so an eviction or an engine restart loses nothing that matters.

use crate::volume::{AnyVolume, Scalar};
use crate::with_volume;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A cached volume and what the engine says about it.
#[derive(Debug)]
pub struct CachedVolume {
    pub id: String,
    /// The voxels, shared between entries that differ only by name.
    pub volume: Arc<AnyVolume>,
    pub name: String,
    pub minimum_value: f64,
    pub maximum_value: f64,
    pub warnings: Vec<String>,
}

impl CachedVolume {
    /// Bytes of voxel data held.
    pub fn bytes(&self) -> u64 {
        let [i, j, k] = self.volume.size_ijk();
        (i * j * k * self.volume.scalar_type().size()) as u64
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Arc<CachedVolume>, u64)>,
    clock: u64,
    bytes: u64,
    /// Voxels evicted while calls in flight still used them, and their size: they stay
    /// counted against the limit until the last call lets go.
    evicted: Vec<(Weak<AnyVolume>, u64)>,
    /// Volumes added and not yet asked for, and when they came: not evicted for
    /// [`FRESH`], so that a client that uploads a volume can use it even when many
    /// clients share a small cache (else it could be evicted before the first call that
    /// names it, and the client would upload it again and again).
    fresh: HashMap<String, Instant>,
    /// Room promised to volumes on their way in ([`Reservation`]): an upload reserves
    /// its volume's size before it receives a byte, so what it holds counts against the
    /// limit from the start and it never waits for room with the voxels in hand.
    reserved: u64,
}

/// How long a volume nobody has asked for yet is kept from eviction.
pub const FRESH: Duration = Duration::from_secs(60);

/// How long a volume nobody has asked for yet is kept even from callers that waited long
/// enough to evict fresh volumes: the client that uploaded it sends the call naming it
/// right after the upload, and on a busy engine another waiting upload would otherwise
/// evict it in between, again after each re-upload (seen with 16 clients sharing a cache
/// smaller than their volumes: a request failed after four uploads).
pub const FRESH_GRACE: Duration = Duration::from_secs(1);

impl Inner {
    /// Bytes of evicted volumes that calls still hold.
    fn held_bytes(&mut self) -> u64 {
        self.evicted.retain(|(w, _)| w.strong_count() > 0);
        self.evicted.iter().map(|(_, b)| b).sum()
    }

    /// Whether the cached volume `id` may not be evicted now: it is fresh (nobody asked
    /// for it yet), and either the caller may not evict fresh volumes or it came less
    /// than `grace` ago.
    fn protected(&self, id: &str, evict_fresh: bool, grace: Duration) -> bool {
        self.fresh
            .get(id)
            .is_some_and(|added| !evict_fresh || added.elapsed() < grace)
    }

    /// Bytes of cached volumes that may not be evicted now (see [`Self::protected`]).
    fn protected_bytes(&mut self, evict_fresh: bool, grace: Duration) -> u64 {
        self.fresh.retain(|_, added| added.elapsed() < FRESH);
        self.entries
            .iter()
            .filter(|(id, _)| self.protected(id, evict_fresh, grace))
            .map(|(_, (v, _))| v.bytes())
            .sum()
    }
}

/// Why a volume could not be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The volume alone (this many bytes) is larger than the limit.
    TooLarge(u64),
    /// Evicted volumes that calls in flight still use and volumes not yet asked for (this
    /// many bytes) leave no room for now.
    Held(u64),
}

/// Volumes by id, at most `limit_bytes` of voxel data.
#[derive(Debug)]
pub struct VolumeCache {
    limit_bytes: u64,
    fresh_grace: Duration,
    inner: Mutex<Inner>,
}

impl VolumeCache {
    /// An empty cache holding at most `limit_bytes` of voxels.
    pub fn new(limit_bytes: u64) -> Self {
        Self::with_fresh_grace(limit_bytes, FRESH_GRACE)
    }

    /// An empty cache whose volumes nobody asked for yet are kept from every eviction for
    /// `grace` ([`FRESH_GRACE`] in the engine).
    pub fn with_fresh_grace(limit_bytes: u64, grace: Duration) -> Self {
        VolumeCache {
            limit_bytes,
            fresh_grace: grace,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The byte limit.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (no partial updates).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The volume with this id, marked as just used.
    pub fn get(&self, id: &str) -> Option<Arc<CachedVolume>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(id)?;
        entry.1 = now;
        let found = entry.0.clone();
        inner.fresh.remove(id);
        Some(found)
    }

    /// Adds a volume, evicting the least recently used ones to stay under the limit.
    ///
    /// The limit counts evicted volumes that calls in flight still use (their memory is
    /// not freed until those calls end) and room reserved for volumes on their way in,
    /// so the engine's volumes never exceed it. A refused volume comes back with the
    /// reason.
    ///
    /// With `evict_fresh` false, volumes nobody has asked for yet are not evicted (the
    /// caller waits a little for their clients to use them); with true they go last.
    pub fn insert(
        &self,
        v: CachedVolume,
        evict_fresh: bool,
    ) -> Result<Arc<CachedVolume>, (Refused, CachedVolume)> {
        let bytes = v.bytes();
        if bytes > self.limit_bytes {
            return Err((Refused::TooLarge(bytes), v));
        }
        let mut inner = self.lock();
        self.insert_locked(&mut inner, v, evict_fresh)
    }

    /// Reserves room for a volume of `bytes` that is on its way in, evicting as
    /// [`Self::insert`] does; [`Self::insert_reserved`] then adds it without waiting.
    /// Dropping the reservation gives the room back.
    pub fn reserve(
        self: &Arc<Self>,
        bytes: u64,
        evict_fresh: bool,
    ) -> Result<Reservation, Refused> {
        if bytes > self.limit_bytes {
            return Err(Refused::TooLarge(bytes));
        }
        let mut inner = self.lock();
        self.make_room(&mut inner, bytes, evict_fresh)?;
        inner.reserved += bytes;
        Ok(Reservation {
            cache: self.clone(),
            bytes,
        })
    }

    /// Adds a volume in the room `room` reserved (or more room, found as
    /// [`Self::insert`] finds it, if the volume is larger than announced).
    pub fn insert_reserved(
        &self,
        v: CachedVolume,
        mut room: Reservation,
    ) -> Result<Arc<CachedVolume>, (Refused, CachedVolume)> {
        let mut inner = self.lock();
        inner.reserved -= room.bytes;
        room.bytes = 0;
        self.insert_locked(&mut inner, v, true)
    }

    fn insert_locked(
        &self,
        inner: &mut Inner,
        v: CachedVolume,
        evict_fresh: bool,
    ) -> Result<Arc<CachedVolume>, (Refused, CachedVolume)> {
        let bytes = v.bytes();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((existing, used)) = inner.entries.get_mut(&v.id) {
            // Same voxels brought again: keep the voxels, but the name is the latest
            // caller's (a volume renamed in Slicer, or an effect output equal to its
            // source, must not come back under an older name).
            if (existing.name != v.name && !v.name.is_empty()) || existing.warnings != v.warnings {
                *existing = Arc::new(CachedVolume {
                    id: existing.id.clone(),
                    volume: existing.volume.clone(),
                    name: if v.name.is_empty() {
                        existing.name.clone()
                    } else {
                        v.name
                    },
                    minimum_value: existing.minimum_value,
                    maximum_value: existing.maximum_value,
                    warnings: v.warnings,
                });
            }
            *used = now;
            let existing = existing.clone();
            inner.fresh.insert(existing.id.clone(), Instant::now());
            return Ok(existing);
        }
        if let Err(refused) = self.make_room(inner, bytes, evict_fresh) {
            return Err((refused, v));
        }
        let arc = Arc::new(v);
        inner.bytes += bytes;
        inner.entries.insert(arc.id.clone(), (arc.clone(), now));
        inner.fresh.insert(arc.id.clone(), Instant::now());
        Ok(arc)
    }

    /// Evicts least recently used volumes until `bytes` more fit beside the cached, held
    /// and reserved ones; refuses before evicting anything when evicting all that may go
    /// would not do.
    fn make_room(&self, inner: &mut Inner, bytes: u64, evict_fresh: bool) -> Result<(), Refused> {
        let grace = self.fresh_grace;
        let mut held = inner.held_bytes() + inner.reserved;
        // Cached entries can go, but neither evicted volumes still in use, reserved room,
        // nor protected fresh ones.
        let kept = held + inner.protected_bytes(evict_fresh, grace);
        if kept + bytes > self.limit_bytes {
            return Err(Refused::Held(kept));
        }
        while inner.bytes + held + bytes > self.limit_bytes {
            let fresh = &inner.fresh;
            let Some(oldest) = inner
                .entries
                .iter()
                .filter(|(id, _)| !inner.protected(id, evict_fresh, grace))
                .min_by_key(|(id, (_, used))| (fresh.contains_key(*id), *used))
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                let gone_bytes = gone.bytes();
                inner.bytes -= gone_bytes;
                if Arc::strong_count(&gone) > 1 || Arc::strong_count(&gone.volume) > 1 {
                    inner
                        .evicted
                        .push((Arc::downgrade(&gone.volume), gone_bytes));
                    held += gone_bytes;
                }
            }
        }
        if inner.bytes + held + bytes > self.limit_bytes {
            return Err(Refused::Held(held));
        }
        Ok(())
    }

    /// Number of volumes held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no volume is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Room in the cache for a volume on its way in; see [`VolumeCache::reserve`].
#[derive(Debug)]
pub struct Reservation {
    cache: Arc<VolumeCache>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.cache.lock().reserved -= self.bytes;
        }
    }
}

/// The content-derived id of a volume: SHA-256 over its voxel type, lattice, geometry and
/// voxel bytes (little-endian), as 32 hex digits. The same volume always gets the same id,
/// whichever way it reached the engine.
pub fn volume_id(v: &AnyVolume) -> String {
    let mut h = Sha256::new();
    h.update(v.scalar_type().name().as_bytes());
    for s in v.size_ijk() {
        h.update((s as u64).to_le_bytes());
    }
    let g = v.geometry();
    for x in g
        .origin
        .iter()
        .chain(&g.spacing)
        .chain(g.direction.iter().flatten())
    {
        h.update(x.to_le_bytes());
    }
    with_volume!(v, vol => {
        let mut buf = Vec::with_capacity(1 << 16);
        for x in vol.data.iter() {
            x.write_le(&mut buf);
            if buf.len() >= 1 << 16 {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
    });
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache without the grace after arrival, for the tests of the other rules.
    fn no_grace(limit_bytes: u64) -> VolumeCache {
        VolumeCache::with_fresh_grace(limit_bytes, Duration::ZERO)
    }
    use crate::volume::{Geometry, Volume};
    use ndarray::Array3;

    fn vol(fill: i16, n: usize) -> CachedVolume {
        let v: AnyVolume =
            Volume::new(Array3::from_elem((1, 1, n), fill), Geometry::default()).into();
        CachedVolume {
            id: volume_id(&v),
            volume: Arc::new(v),
            name: String::new(),
            minimum_value: 0.0,
            maximum_value: 0.0,
            warnings: vec![],
        }
    }

    #[test]
    fn the_same_voxels_brought_again_take_the_latest_name_and_share_the_voxels() {
        let cache = no_grace(1000);
        let first = cache.insert(vol(1, 10), false).unwrap();
        let renamed = CachedVolume {
            name: "CT renamed".into(),
            ..vol(1, 10)
        };
        let second = cache.insert(renamed, false).unwrap();
        assert_eq!(second.name, "CT renamed");
        assert!(Arc::ptr_eq(&first.volume, &second.volume));
        assert_eq!(cache.get(&first.id).unwrap().name, "CT renamed");
        // A caller without a name does not erase the one the volume has.
        let third = cache.insert(vol(1, 10), false).unwrap();
        assert_eq!(third.name, "CT renamed");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let cache = no_grace(40); // two volumes of 10 i16 voxels
        let (a, b, c) = (vol(1, 10), vol(2, 10), vol(3, 10));
        let (ida, idb, idc) = (a.id.clone(), b.id.clone(), c.id.clone());
        cache.insert(a, false).unwrap();
        cache.insert(b, false).unwrap();
        assert!(cache.get(&idb).is_some());
        assert!(cache.get(&ida).is_some()); // a is now more recent than b
        cache.insert(c, false).unwrap();
        assert!(cache.get(&ida).is_some());
        assert!(cache.get(&idb).is_none());
        assert!(cache.get(&idc).is_some());
        assert_eq!(
            cache.insert(vol(4, 30), false).unwrap_err().0,
            Refused::TooLarge(60)
        );
    }

    #[test]
    fn evicted_volumes_still_in_use_count_until_released() {
        let cache = no_grace(40); // two volumes of 10 i16 voxels
        let a = cache.insert(vol(1, 10), false).unwrap();
        let b = cache.insert(vol(2, 10), false).unwrap().id.clone();
        cache.get(&a.id);
        cache.get(&b);
        // A call holds `a`: evicting it frees nothing, so after `c` there is no room for `d`.
        let c = vol(3, 10);
        let idc = c.id.clone();
        cache.insert(c, false).unwrap();
        cache.get(&idc);
        assert!(cache.get(&a.id).is_none());
        assert_eq!(
            cache.insert(vol(4, 20), false).unwrap_err().0,
            Refused::Held(20)
        );
        assert!(cache.get(&idc).is_some(), "a refused insert evicts nothing");
        // The call ends: its volume's memory is free again.
        drop(a);
        cache.insert(vol(4, 20), false).unwrap();
        assert!(cache.get(&idc).is_none());
    }

    #[test]
    fn reserved_room_counts_until_the_volume_arrives_or_the_reservation_goes() {
        let cache = Arc::new(no_grace(40)); // vol(_, n) holds 2n bytes
        let a = cache.insert(vol(1, 10), false).unwrap().id.clone();
        cache.get(&a);
        // An upload of 30 bytes reserves its room before its bytes arrive: `a` goes.
        let room = cache.reserve(30, false).unwrap();
        assert!(cache.get(&a).is_none());
        // The reserved room is not given to anyone else.
        assert_eq!(cache.reserve(30, true).unwrap_err(), Refused::Held(30));
        let b = cache.insert(vol(2, 5), false).unwrap().id.clone();
        assert_eq!(
            cache.insert(vol(3, 5), false).unwrap_err().0,
            Refused::Held(40)
        );
        // The volume arrives in its room, without evicting `b`.
        let c = cache.insert_reserved(vol(4, 15), room).unwrap().id.clone();
        assert!(cache.get(&b).is_some() && cache.get(&c).is_some());
        // A reservation dropped (client gone mid-upload) gives its room back.
        let room = cache.reserve(10, true).unwrap();
        assert!(cache.get(&b).is_none(), "the least recently used made room");
        drop(room);
        cache.insert(vol(5, 5), true).unwrap();
        assert!(cache.get(&c).is_some());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn ids_depend_on_content_and_geometry() {
        let a = vol(1, 10);
        assert_eq!(a.id, vol(1, 10).id);
        assert_ne!(a.id, vol(2, 10).id);
        let mut moved = (*a.volume).clone();
        let mut g = *moved.geometry();
        g.origin[2] = 5.0;
        moved.set_geometry(g);
        assert_ne!(volume_id(&moved), a.id);
        assert_eq!(a.id.len(), 32);
    }

    #[test]
    fn a_volume_nobody_asked_for_yet_is_not_evicted() {
        // Two volumes of 10 i16 voxels; fresh volumes may go as soon as a caller waited.
        let cache = no_grace(40);
        let a = cache.insert(vol(1, 10), false).unwrap().id.clone();
        let b = cache.insert(vol(2, 10), false).unwrap().id.clone();
        // Both are fresh: a third must wait rather than push out an upload before its use.
        assert_eq!(
            cache.insert(vol(3, 10), false).unwrap_err().0,
            Refused::Held(40)
        );
        assert!(cache.get(&a).is_some());
        // `a` was used: it can go now, `b` still cannot.
        cache.insert(vol(3, 10), false).unwrap();
        assert!(cache.get(&a).is_none());
        // A caller that waited long enough may push out a fresh one, the oldest first.
        assert!(cache.insert(vol(4, 10), false).is_err());
        cache.insert(vol(4, 10), true).unwrap();
        assert!(cache.get(&b).is_none());
    }

    #[test]
    fn a_volume_just_uploaded_is_kept_even_from_callers_that_waited() {
        let cache = Arc::new(VolumeCache::with_fresh_grace(
            40,
            Duration::from_millis(300),
        ));
        let a = cache.insert(vol(1, 10), false).unwrap().id.clone();
        let b = cache.insert(vol(2, 10), false).unwrap().id.clone();
        // Within the grace even a caller that waited (evict_fresh) finds no room...
        assert_eq!(
            cache.insert(vol(3, 10), true).unwrap_err().0,
            Refused::Held(40)
        );
        assert_eq!(cache.reserve(20, true).unwrap_err(), Refused::Held(40));
        // ...so the clients that uploaded them still find them.
        assert!(cache.get(&a).is_some());
        // `a` was used; after the grace the unused `b` may go too.
        std::thread::sleep(Duration::from_millis(350));
        cache.insert(vol(3, 10), true).unwrap();
        cache.insert(vol(4, 10), true).unwrap();
        assert!(cache.get(&a).is_none() && cache.get(&b).is_none());
    }
}

//! The memory that calls in flight may use besides the volume cache (`--work-mb`), and how
//! many of them compute at once.
//!
//! Before an upload, an effect or an export allocates, it reserves an estimate of what it
//! will hold: a request whose estimate is above the whole budget is refused at once with
//! RESOURCE_EXHAUSTED (whatever lattice or number of segments it describes), and the others
//! wait their turn. The engine's voxel memory thus stays under `--cache-mb` + `--work-mb`
//! (+ the preview sessions' own budget).

use super::EngineError;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1 << 20;

/// Working memory an effect on `voxels` voxels with `segments` segments may hold: the
/// decoded masks and the result's masks (a byte per voxel each), and the effect's own arrays
/// (up to 16 bytes per voxel: Grow from seeds' distances, labels and queue; smoothing's and
/// Watershed's float images). An estimate, on the generous side.
pub fn effect_bytes(size: [usize; 3], segments: usize) -> u64 {
    voxels(size).saturating_mul(2 * segments as u64 + 16)
}

/// Working memory of an export: the masks, the label layers (two bytes per voxel, one
/// layer per group of non-overlapping segments, counted as two), the label map written and
/// the file.
pub fn export_bytes(size: [usize; 3], segments: usize) -> u64 {
    voxels(size).saturating_mul(segments as u64 + 10)
}

fn voxels(size: [usize; 3]) -> u64 {
    size.iter()
        .fold(1u64, |acc, &n| acc.saturating_mul(n.max(1) as u64))
}

/// The working-memory budget and the compute slots.
#[derive(Debug, Clone)]
pub struct WorkBudget {
    limit_mib: u32,
    memory: Arc<Semaphore>,
    slots: Arc<Semaphore>,
}

/// Memory and a compute slot held by one call; released when dropped.
#[derive(Debug)]
pub struct WorkPermit {
    _memory: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

impl WorkBudget {
    /// `limit_bytes` of working memory (rounded down to MiB, at least 1 MiB) and `slots`
    /// calls computing at once.
    pub fn new(limit_bytes: u64, slots: usize) -> Self {
        let limit_mib = (limit_bytes / MIB).clamp(1, Semaphore::MAX_PERMITS as u64) as u32;
        WorkBudget {
            limit_mib,
            memory: Arc::new(Semaphore::new(limit_mib as usize)),
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// The budget in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_mib as u64 * MIB
    }

    /// Waits for `bytes` of working memory and a compute slot for `what`; refuses at once
    /// when `bytes` is above the whole budget.
    pub async fn reserve(&self, bytes: u64, what: &str) -> Result<WorkPermit, EngineError> {
        let mib = bytes.div_ceil(MIB).max(1);
        if mib > self.limit_mib as u64 {
            return Err(EngineError::TooLarge(format!(
                "{what} needs about {mib} MiB of working memory, above the engine's limit of {} \
                 MiB (segkit serve --work-mb): crop the volume or send fewer segments",
                self.limit_mib
            )));
        }
        let closed = |_| EngineError::Internal("the engine is shutting down".into());
        let slot = self.slots.clone().acquire_owned().await.map_err(closed)?;
        let memory = self
            .memory
            .clone()
            .acquire_many_owned(mib as u32)
            .await
            .map_err(closed)?;
        Ok(WorkPermit {
            _memory: memory,
            _slot: slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn too_large_is_refused_at_once_and_the_rest_waits_its_turn() {
        let budget = WorkBudget::new(10 * MIB, 4);
        let err = budget.reserve(11 * MIB, "the effect").await.unwrap_err();
        assert!(err.to_string().contains("--work-mb"), "{err}");
        let first = budget.reserve(6 * MIB, "a").await.unwrap();
        // 6 + 6 > 10: the second waits until the first is released.
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(6 * MIB, "b"));
        assert!(waiting.await.is_err());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), budget.reserve(6 * MIB, "b"));
        assert!(second.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn slots_bound_the_calls_computing_at_once() {
        let budget = WorkBudget::new(100 * MIB, 1);
        let first = budget.reserve(1, "a").await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(1, "b"));
        assert!(waiting.await.is_err());
        drop(first);
        assert!(budget.reserve(1, "b").await.is_ok());
    }

    #[test]
    fn estimates_saturate_instead_of_overflowing() {
        assert_eq!(effect_bytes([1 << 40, 1 << 40, 1 << 40], 3), u64::MAX);
        assert_eq!(effect_bytes([10, 10, 10], 2), 1000 * 20);
    }
}

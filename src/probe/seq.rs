//! The persisted seq counter: blocks of `SEQ_BLOCK` reserved on disk before use, so a restarted
//! probe never reuses a seq (and ingest dedups resends).

use super::*;

/// Seq numbers reserved per write of the state file.
pub(super) const SEQ_BLOCK: u64 = 1000;

/// The persisted seq counter.
pub struct SeqCounter {
    path: PathBuf,
    next: u64,
    reserved_until: u64,
    /// The first seq of this run (its event carries `run_start`).
    run_first: u64,
}

impl SeqCounter {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("seq");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().with_context(|| format!("{}: corrupt", path.display()))?,
            Err(_) => 1,
        };
        Ok(Self { path, next, reserved_until: next, run_first: next })
    }

    /// Whether `seq` is this run's first: its event tells ingest that the numbers the previous
    /// run reserved and did not deliver are abandoned, not missing.
    pub fn starts_run(&self, seq: u64) -> bool {
        seq == self.run_first
    }

    /// The next seq, never handed out before (across restarts).
    pub fn take(&mut self) -> anyhow::Result<u64> {
        if self.next >= self.reserved_until {
            self.reserved_until = self.next + SEQ_BLOCK;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, self.reserved_until.to_string())?;
            std::fs::rename(&tmp, &self.path)?;
        }
        let s = self.next;
        self.next += 1;
        Ok(s)
    }
}

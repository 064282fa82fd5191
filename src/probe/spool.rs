//! The on-disk spool of unacknowledged batches: one file per batch named by its first seq,
//! re-sent in order, bounded (oldest dropped first, counted).

use super::*;

/// The on-disk spool of unacknowledged batches.
pub struct Spool {
    dir: PathBuf,
    max: usize,
    /// Files in the spool (counted once at open, then kept up to date).
    len: usize,
    pub dropped: u64,
}

impl Spool {
    pub fn open(dir: &Path, max: usize) -> anyhow::Result<Self> {
        let dir = dir.join("spool");
        std::fs::create_dir_all(&dir)?;
        let mut s = Self { dir, max: max.max(1), len: 0, dropped: 0 };
        s.len = s.files().len();
        Ok(s)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn depth(&self) -> usize {
        self.len
    }

    /// Removes a delivered (or rejected) batch returned by `front`.
    pub fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)?;
        self.len = self.len.saturating_sub(1);
        Ok(())
    }

    /// Keeps a batch (named by its first seq, so the order is the send order).
    pub fn push(&mut self, first_seq: u64, body: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(format!("{first_seq:020}.json"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)?;
        self.len += 1;
        if self.len > self.max {
            let files = self.files();
            for old in &files[..files.len().saturating_sub(self.max)] {
                std::fs::remove_file(old)?;
                self.dropped += 1;
            }
            self.len = self.len.min(self.max);
        }
        Ok(())
    }

    /// Rewrites a spooled batch in place (same name, so the same place in the order).
    pub fn replace(&mut self, path: &Path, body: &[u8]) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The oldest batch.
    pub fn front(&self) -> Option<(PathBuf, Vec<u8>)> {
        let p = self.files().into_iter().next()?;
        let body = std::fs::read(&p).ok()?;
        Some((p, body))
    }
}

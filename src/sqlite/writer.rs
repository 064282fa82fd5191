//! The one writer thread: group-commits whatever is queued in a single transaction (one fsync for
//! many requests), each job inside its own savepoint only when one of them failed, and answers
//! each caller only after COMMIT.
//!
//! The writer knows nothing of journals or rollups: a job is opaque statements over the
//! transaction (`Job`), so the journal and the store use the writer and never the reverse.
//!
//! Invariant: no caller hears success before the transaction holding its statements committed; a
//! job that failed is rolled back alone (the others still commit).

use rusqlite::{Connection, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::error::{SqlResult, SqliteError};

/// Jobs taken into one transaction at most.
const GROUP_MAX: usize = 512;
/// Jobs queued for the writer at most (callers wait beyond: backpressure).
pub(super) const WRITER_QUEUE: usize = 1024;

/// Work for the writer. `exec` may run twice (a group is retried with savepoints when one of its
/// jobs failed), so it must only read what it owns.
pub(super) trait Job: Send {
    /// Runs the job's statements inside the group's transaction; false when they failed (the
    /// answer is kept until the group ends).
    fn exec(&mut self, tx: &Transaction<'_>) -> bool;
    /// The whole transaction failed (or never started): the answer is that error.
    fn fail(&mut self, e: &SqliteError);
    /// Sends the answer (after COMMIT). Returns whether the job added journal rows, so that the
    /// writer wakes the journal's consumer.
    fn answer(self: Box<Self>) -> bool;
}

/// A job answering `T` to one caller.
pub(super) struct Call<T, F> {
    run: F,
    out: Option<SqlResult<T>>,
    reply: oneshot::Sender<SqlResult<T>>,
    /// Whether a successful answer means new journal rows.
    publishes: fn(&T) -> bool,
}

impl<T, F> Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>) -> SqlResult<T> + Send + 'static,
{
    pub(super) fn job(run: F, publishes: fn(&T) -> bool) -> (Box<dyn Job>, oneshot::Receiver<SqlResult<T>>) {
        let (reply, rx) = oneshot::channel();
        (Box::new(Self { run, out: None, reply, publishes }), rx)
    }
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>) -> SqlResult<T> + Send + 'static,
{
    fn exec(&mut self, tx: &Transaction<'_>) -> bool {
        let r = (self.run)(tx);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn fail(&mut self, e: &SqliteError) {
        self.out = Some(Err(e.clone()));
    }

    fn answer(self: Box<Self>) -> bool {
        let Some(out) = self.out else { return false };
        let published = out.as_ref().is_ok_and(self.publishes);
        drop(self.reply.send(out));
        published
    }
}

/// A job nobody waits for (an ack, a dead letter): its statements never fail the group; a failure
/// is logged by the statements themselves.
pub(super) struct Detached<F>(pub(super) F);

impl<F: FnMut(&Transaction<'_>) + Send + 'static> Job for Detached<F> {
    fn exec(&mut self, tx: &Transaction<'_>) -> bool {
        (self.0)(tx);
        true
    }

    fn fail(&mut self, _: &SqliteError) {}

    fn answer(self: Box<Self>) -> bool {
        false
    }
}

/// Starts the writer thread on `conn`; `on_publish` runs after a group that added journal rows.
pub(super) fn spawn(
    conn: Connection,
    on_publish: impl Fn() + Send + 'static,
) -> std::io::Result<mpsc::Sender<Box<dyn Job>>> {
    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    std::thread::Builder::new().name("netqoe-sqlite-writer".into()).spawn(move || writer_loop(conn, rx, on_publish))?;
    Ok(tx)
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, on_publish: impl Fn()) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if run_group(&mut conn, jobs) {
            on_publish();
        }
    }
}

/// Runs `jobs` in one transaction. Without savepoints (the fast path: a savepoint per job makes
/// SQLite copy every page a job touches) a failing job aborts the attempt (`Ok(false)`), and the
/// group is run again with a savepoint per job so that only the failing job fails.
fn attempt(conn: &mut Connection, jobs: &mut [Box<dyn Job>], savepoints: bool) -> SqlResult<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in jobs.iter_mut() {
        if !savepoints {
            if !job.exec(&tx) {
                return Ok(false); // dropping `tx` rolls the attempt back
            }
            continue;
        }
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            job.fail(&SqliteError::from(e));
            continue;
        }
        let ok = job.exec(&tx);
        let end = if ok { tx.execute_batch("RELEASE job") } else { tx.execute_batch("ROLLBACK TO job; RELEASE job") };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint release failed");
        }
    }
    tx.commit()?;
    Ok(true)
}

/// Runs a group of jobs in one transaction; answers only after COMMIT. Returns whether any
/// journal row was added.
fn run_group(conn: &mut Connection, mut jobs: Vec<Box<dyn Job>>) -> bool {
    let outcome = match attempt(conn, &mut jobs, false) {
        Ok(true) => Ok(()),
        Ok(false) => attempt(conn, &mut jobs, true).map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        for j in &mut jobs {
            j.fail(&e);
        }
    }
    let mut published = false;
    for j in jobs {
        published |= j.answer();
    }
    published
}

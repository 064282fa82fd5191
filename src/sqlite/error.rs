//! The SQLite adapter's error: classified by SQLite's result code, mapped to the ports' errors
//! with whether a retry helps.

use super::*;

/// What went wrong with the SQLite file, classified by SQLite's result code (never by the text of
/// the message), so the ports can say whether a retry helps.
#[derive(Clone, Debug, thiserror::Error)]
#[error("sqlite ({kind:?}): {source}")]
pub struct SqliteError {
    pub kind: SqliteErrorKind,
    #[source]
    source: Arc<dyn std::error::Error + Send + Sync>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteErrorKind {
    /// Another connection holds a lock (`SQLITE_BUSY`, `SQLITE_LOCKED`): a retry soon helps.
    Busy,
    /// The disk is full or failing, or the file cannot be opened or written: a retry helps once
    /// the operator frees space or repairs the disk.
    Storage,
    /// The file, or a row in it, is not what this build wrote: a retry does not help.
    Corrupt,
    /// The writer thread stopped (the process is shutting down): another process may answer.
    Stopped,
    /// Anything else (a constraint, a statement SQLite refuses): a bug, a retry does not help.
    Failed,
}

impl SqliteError {
    fn new(kind: SqliteErrorKind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind, source: Arc::from(source.into()) }
    }

    pub(super) fn stopped() -> Self {
        Self::new(SqliteErrorKind::Stopped, "sqlite writer stopped")
    }

    pub(super) fn corrupt(what: impl Into<String>) -> Self {
        Self::new(SqliteErrorKind::Corrupt, what.into())
    }

    /// The journal's answer to a publish: busy is overload (503), a full or failing disk and a
    /// stopped writer are unavailability (503), the rest a failure a retry cannot mend (500).
    pub fn into_bus(self) -> BusError {
        match self.kind {
            SqliteErrorKind::Busy => BusError::overloaded(self),
            SqliteErrorKind::Storage | SqliteErrorKind::Stopped => BusError::unavailable(self),
            SqliteErrorKind::Corrupt | SqliteErrorKind::Failed => BusError::failed(self),
        }
    }

    pub fn into_store(self) -> StoreError {
        match self.kind {
            SqliteErrorKind::Busy | SqliteErrorKind::Storage | SqliteErrorKind::Stopped => {
                StoreError::unavailable(self)
            }
            SqliteErrorKind::Corrupt => StoreError::corrupt(self),
            SqliteErrorKind::Failed => StoreError::failed(self),
        }
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => SqliteErrorKind::Busy,
            Some(C::DiskFull | C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::FileLockingProtocolFailed) => {
                SqliteErrorKind::Storage
            }
            Some(C::DatabaseCorrupt | C::NotADatabase) => SqliteErrorKind::Corrupt,
            // a row that does not decode as the column this build wrote
            None if matches!(
                e,
                rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..)
            ) =>
            {
                SqliteErrorKind::Corrupt
            }
            _ => SqliteErrorKind::Failed,
        };
        Self::new(kind, e)
    }
}

impl From<serde_json::Error> for SqliteError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(SqliteErrorKind::Failed, e)
    }
}

/// A writer job's answer.
pub(super) type SqlResult<T> = std::result::Result<T, SqliteError>;

#[cfg(test)]
mod tests {
    use netqoe_actors::bus::BusErrorKind;
    use netqoe_actors::store::StoreErrorKind;

    use super::*;

    /// Errors are classified by SQLite's result code, and the ports say whether a retry helps:
    /// a lock or a full disk is a 503 (retry), a constraint or an undecodable row is not.
    #[test]
    fn errors_are_classified_by_code_and_mapped_to_retry_hints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = Connection::open(&path).unwrap();
        a.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").unwrap();

        // another connection holds the write lock
        let b = Connection::open(&path).unwrap();
        b.busy_timeout(Duration::ZERO).unwrap();
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = SqliteError::from(b.execute_batch("BEGIN IMMEDIATE").unwrap_err());
        a.execute_batch("ROLLBACK").unwrap();
        assert_eq!(busy.kind, SqliteErrorKind::Busy);
        assert_eq!(busy.clone().into_bus().kind, BusErrorKind::Overloaded);
        assert!(busy.into_store().retryable());

        // the file may not grow: SQLITE_FULL, as a full disk
        let page: i64 = a.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        a.execute_batch(&format!("PRAGMA max_page_count = {}", page + 1)).unwrap();
        let full = SqliteError::from(a.execute("INSERT INTO t (v) VALUES (zeroblob(1000000))", []).unwrap_err());
        assert_eq!(full.kind, SqliteErrorKind::Storage, "{full}");
        let bus = full.clone().into_bus();
        assert!(bus.kind == BusErrorKind::Unavailable && bus.retryable());
        assert!(full.into_store().retryable());
        a.execute_batch("PRAGMA max_page_count = 1073741823").unwrap();

        // a constraint: a bug, not a condition that passes
        a.execute("INSERT INTO t (k, v) VALUES (1, x'00')", []).unwrap();
        let dup = SqliteError::from(a.execute("INSERT INTO t (k, v) VALUES (1, x'00')", []).unwrap_err());
        assert_eq!(dup.kind, SqliteErrorKind::Failed);
        assert!(!dup.into_bus().retryable());

        // a row that is not what this build wrote
        a.execute("INSERT INTO t (k, v) VALUES (2, 'text')", []).unwrap();
        let row =
            SqliteError::from(a.query_row("SELECT v FROM t WHERE k = 2", [], |r| r.get::<_, i64>(0)).unwrap_err());
        assert_eq!(row.kind, SqliteErrorKind::Corrupt);
        let store = row.into_store();
        assert!(store.kind == StoreErrorKind::Corrupt && !store.retryable());
        assert!(!SqliteError::corrupt("x").into_bus().retryable());
        assert!(SqliteError::stopped().into_bus().retryable());
    }
}

//! Database errors, split by what the caller should do about them.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError;

/// A failed database operation.
///
/// `Unavailable` means the database could not be reached (pool timeout, refused or closed
/// connection): transient, so HTTP services answer 503 and callers may retry. Everything else is
/// `Query`, a bug or a data problem, answered as an opaque 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(DieselError),
    /// A stored secret could not be opened: its key is missing from the keyring, or it was
    /// altered. A configuration problem, not a transient one.
    #[error(transparent)]
    Secret(#[from] crate::crypto::CryptoError),
}

impl DbError {
    /// Whether retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | DieselError::BrokenTransactionManager => DbError::Unavailable(error.to_string()),
            // SQLSTATE class 57 (operator intervention: admin shutdown, crash shutdown, cannot
            // connect now) and 08 (connection exception) are what a restarting server sends.
            DieselError::DatabaseError(_, info)
                if info.message().contains("terminating connection")
                    || info.message().contains("the database system is") =>
            {
                DbError::Unavailable(error.to_string())
            }
            // `statement_timeout` (SQLSTATE 57014): the database is too busy or something holds
            // a lock for long; the whole request or batch is retried later, not piece by piece.
            DieselError::DatabaseError(_, info)
                if info
                    .message()
                    .contains("canceling statement due to statement timeout") =>
            {
                DbError::Unavailable(error.to_string())
            }
            _ => DbError::Query(error),
        }
    }
}

impl From<bb8::RunError<PoolError>> for DbError {
    fn from(error: bb8::RunError<PoolError>) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

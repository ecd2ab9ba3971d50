//! Opening a replica: its store and documents loaded (`replica`), then the
//! scans a crash or a restart left in the journal written into their
//! documents before anyone reads them, and the journal's writer started.
//! It lives above both, so the replica needs nothing from the writer.

use std::path::Path;

use crate::{ClientCore, ClientError, journal};

impl ClientCore {
    /// Opens (creating and migrating if needed) the store at `path` and loads
    /// every document in it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let core = Self::load(path.as_ref())?;
        core.flush_journal()?;
        journal::start_writer(core.downgrade());
        Ok(core)
    }
}

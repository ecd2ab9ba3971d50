//! What this node hears from the other nodes sharing its store (a
//! PostgreSQL store's change feed): access revoked elsewhere closes the
//! sockets it covers here, a gap in the feed re-checks every open session,
//! and presence notes travel both ways. A single-node store has no feed and
//! none of this runs.

use tokio::sync::{mpsc, watch};

use crate::live::{Cut, LiveConnections};
use crate::store::{ChangeNotice, Store};

/// Applies revocations announced by other nodes; after a gap in the feed,
/// re-checks every open session connection against the store.
pub(crate) fn follow_revocations(
    mut feed: tokio::sync::broadcast::Receiver<ChangeNotice>,
    store: Store,
    live: LiveConnections,
) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(ChangeNotice::AccessRevoked { kind, id }) => {
                    if let Some(cut) = Cut::from_parts(&kind, &id) {
                        let closed = live.cut(&cut, "access revoked on another node");
                        tracing::info!(?cut, closed, "revocation from another node applied");
                    }
                }
                Ok(ChangeNotice::Resync) | Err(RecvError::Lagged(_)) => {
                    for principal in live.principals() {
                        let Some(session) = principal.session_id() else {
                            continue;
                        };
                        if let Ok(false) = store.accounts.session_live(session).await {
                            live.cut(&Cut::Session(session.to_owned()), "session ended");
                        }
                    }
                }
                Ok(ChangeNotice::Written { .. } | ChangeNotice::Presence { .. }) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// A presence board that sends this node's notes to the other nodes and
/// applies theirs.
pub(crate) fn share_presence(
    mut feed: tokio::sync::broadcast::Receiver<ChangeNotice>,
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> crate::presence::PresenceBoard {
    use tokio::sync::broadcast::error::RecvError;
    let (outbox, mut notes) = mpsc::unbounded_channel::<crate::presence::PresenceNote>();
    let board = crate::presence::PresenceBoard::shared(outbox);
    tokio::spawn(async move {
        loop {
            let note = tokio::select! {
                note = notes.recv() => note,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(note) = note else { return };
            let text = serde_json::to_string(&note).expect("a presence note serialises");
            if let Err(error) = store.node.announce_presence(&text).await {
                tracing::warn!(%error, "presence not shared with the other nodes");
            }
        }
    });
    let remote = board.clone();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(ChangeNotice::Presence { node, note }) => match serde_json::from_str(&note) {
                    Ok(note) => remote.apply_remote(&node, note),
                    Err(error) => {
                        tracing::warn!(%error, "a presence note from another node is unreadable")
                    }
                },
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    board
}

"""SessionDB: SQL storage of sessions, tasks, events, idempotency keys and owner nonces."""

from services.session.store.sessiondb import Change, SessionDB, StoredRequest, VersionConflict

__all__ = ["Change", "SessionDB", "StoredRequest", "VersionConflict"]

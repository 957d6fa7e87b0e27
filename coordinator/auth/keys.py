"""API keys: random secrets shown once, stored only as SHA-256 hashes.

The secrets are 256-bit random tokens, so a plain SHA-256 is the right storage
hash (a slow password hash buys nothing against brute force here and would cost
a hash per RPC).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

from sqlmodel import Session, col, select

from stablequeue_coordinator.auth.principal import Principal, Scope
from stablequeue_coordinator.common import NAME, utcnow
from stablequeue_coordinator.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from stablequeue_coordinator.store import Database
from stablequeue_coordinator.store.tables import ApiKeyRow

log = logging.getLogger(__name__)


def _node_free(session: Session, node: str, key_id: str) -> None:
    """Raises PermissionDenied when another active key has `node`."""
    taken = session.exec(
        select(ApiKeyRow).where(ApiKeyRow.node == node, col(ApiKeyRow.revoked_at).is_(None))
    ).first()
    if taken is not None and taken.id != key_id:
        raise PermissionDenied(f"node {node} belongs to another key ({taken.name})")


SECRET_PREFIX = "sq_"
LAST_USED_RESOLUTION_S = 60.0


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    """Creates, lists, revokes and checks API keys.

    Valid keys are cached in memory by hash; revoking through this service drops
    the cache entry, so a revoked key is refused on its very next call.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Principal] = {}
        self._last_used_written: dict[str, float] = {}

    async def create(self, name: str, scope: Scope, node: str = "") -> tuple[ApiKeyRow, str]:
        """Creates a key (a node key bound to `node` when given). Returns the row and the
        secret (which is not stored).

        Raises:
            InvalidArgument: empty or over-long name; a node for a key that is not a
                node key, or not a node name.
            PermissionDenied: another key has that node.
        """
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidArgument("name", "required, at most 100 characters")
        if node and scope is not Scope.NODE:
            raise InvalidArgument("node", "only a node key belongs to a node")
        if node and not NAME.match(node):
            raise InvalidArgument("node", "1-100 letters, digits, '.', '_' or '-'")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            scope=scope.value,
            secret_hash=hash_secret(secret),
            created_at=utcnow(),
            node=node or None,
        )

        def insert(session: Session) -> ApiKeyRow:
            if node:
                _node_free(session, node, row.id)
            session.add(row)
            return row

        return await self._db.run(insert), secret

    async def list(self, include_revoked: bool) -> list[ApiKeyRow]:
        def query(session: Session) -> list[ApiKeyRow]:
            stmt = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            if not include_revoked:
                stmt = stmt.where(ApiKeyRow.revoked_at.is_(None))  # type: ignore[union-attr]
            return list(session.exec(stmt))

        return await self._db.run(query)

    async def revoke(self, key_id: str) -> ApiKeyRow:
        """Revokes a key (idempotent).

        Raises:
            NotFound: no key has that id.
        """

        def update(session: Session) -> ApiKeyRow:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key with id {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
            return row

        row = await self._db.run(update)
        self._cache.pop(row.secret_hash, None)
        return row

    async def authenticate(self, secret: str) -> Principal:
        """Returns the principal of a valid, unrevoked key.

        Raises:
            Unauthenticated: unknown or revoked key.
        """
        digest = hash_secret(secret)
        principal = self._cache.get(digest)
        if principal is None:
            row = await self._db.run(lambda s: _find_active(s, digest))
            if row is None:
                raise Unauthenticated("invalid or revoked API key")
            principal = Principal(
                key_id=row.id, scope=Scope(row.scope), name=row.name, node=row.node or ""
            )
            self._cache[digest] = principal
        await self._touch(principal.key_id)
        return principal

    async def bind_node(self, who: Principal, name: str) -> None:
        """Lets a node key act as node (or inventory host) `name` only: the name it first
        used, which no other key may then use. Admin keys act for any.

        Raises:
            PermissionDenied: the key belongs to another node, or the node to another key.
        """
        if who.scope is not Scope.NODE or who.node == name:
            return
        if who.node:
            raise PermissionDenied(f"this node key belongs to node {who.node}, not {name}")

        def bind(session: Session) -> None:
            _node_free(session, name, who.key_id)
            row = session.get(ApiKeyRow, who.key_id)
            if row is None or (row.node and row.node != name):
                raise PermissionDenied(f"this node key belongs to node {row.node if row else '?'}")
            row.node = name
            session.add(row)

        await self._db.run(bind)
        for digest, cached in list(self._cache.items()):
            if cached.key_id == who.key_id:
                del self._cache[digest]  # read again, with its node
        log.info("key %s (%s) now belongs to node %s", who.key_id, who.name, name)

    async def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._last_used_written.get(key_id, -1e9) < LAST_USED_RESOLUTION_S:
            return
        self._last_used_written[key_id] = now

        def update(session: Session) -> None:
            row = session.get(ApiKeyRow, key_id)
            if row is not None:
                row.last_used_at = utcnow()
                session.add(row)

        await self._db.run(update)


def _find_active(session: Session, digest: str) -> ApiKeyRow | None:
    stmt = select(ApiKeyRow).where(
        ApiKeyRow.secret_hash == digest,
        ApiKeyRow.revoked_at.is_(None),  # type: ignore[union-attr]
    )
    return session.exec(stmt).first()

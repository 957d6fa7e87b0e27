"""Statements of the job path, run straight on SQLite's driver.

The dispatcher claims and finishes every job with a one-row UPDATE ... RETURNING, and
stores its images and submits with a multi-row INSERT. Through SQLAlchemy each of those
executions builds an execution context, its parameters and its result's metadata
anew: a one-row claim's transaction cost 143 µs of CPU that way, 96 µs this way, the
bare SQL on the `sqlite3` module 71 µs (tmpfs). A `HotStatement` keeps what
SQLAlchemy compiled for the database once (its SQL, its parameter order, its type
conversions) and on SQLite runs it on the DB-API connection, inside the caller's
transaction; the values written and read are SQLAlchemy's own conversions, so a row
stored either way reads back the same. On PostgreSQL it is plain
`connection.execute`, and so it is on an engine something watches (statement
listeners, `echo`), so that what watches sees every statement. On the direct path
errors are the driver's own (`sqlite3.Error`), not SQLAlchemy's wrappers.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable, ReturnsRows

# A converter of one value to or from the database (None: the value as it is).
Processor = Callable[[Any], Any] | None
# A row a statement returned, its columns as attributes: SQLAlchemy's `Row`, or on
# the direct path a named tuple.
Fetched = Any


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]  # the parameters, in the order the SQL takes them
    fixed: dict[str, Any]  # values the statement carries (literals in expressions)
    binds: tuple[Processor, ...]  # per parameter
    row: Callable[[Iterable[Any]], Any] | None  # makes a result row: a named tuple
    results: tuple[Processor, ...]  # per result column


class HotStatement:
    """A statement compiled once, with bind parameters named by the caller.

    Args:
        statement: an UPDATE/SELECT whose parameters are `bindparam`s (and literals,
            which it keeps), or a bare `insert(table)` for `many`, whose parameters are
            the columns its rows give (as SQLAlchemy does, those of the first row).
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # By the columns an INSERT's rows give (None: the statement's own parameters).
        self._compiled: dict[tuple[str, ...] | None, _Compiled] = {}

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Fetched | None:
        """The first row the statement returns (attributes by column name), or None."""
        if not _direct(connection):
            return connection.execute(self.statement, dict(params)).first()
        compiled = self._compiled.get(None) or self._compile(connection.dialect, None)
        cursor = _driver(connection).execute(compiled.sql, _values(compiled, params))
        found = cursor.fetchone()
        cursor.close()
        if found is None or compiled.row is None:
            return None
        return compiled.row(
            value if convert is None or value is None else convert(value)
            for convert, value in zip(compiled.results, found, strict=True)
        )

    def scalar(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(connection, params)
        return None if row is None else row[0]

    def many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Runs the statement once per row of parameters (a multi-row INSERT)."""
        if not rows:
            return
        if not _direct(connection):
            connection.execute(self.statement, [dict(row) for row in rows])
            return
        columns = tuple(rows[0])
        compiled = self._compiled.get(columns) or self._compile(connection.dialect, columns)
        _driver(connection).executemany(compiled.sql, [_values(compiled, row) for row in rows])

    def _compile(self, dialect: Dialect, columns: tuple[str, ...] | None) -> _Compiled:
        keys = list(columns) if columns is not None else None
        compiled = self.statement.compile(dialect=dialect, column_keys=keys)
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name}'s parameters are not positional")
        defaulted = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        if defaulted:  # SQLAlchemy computes those per execution: give them
            raise TypeError(f"columns with Python-side defaults not given: {defaulted}")
        names = tuple(compiled.positiontup)
        fixed, binds = {}, []
        for name in names:
            bind = compiled.binds[name]
            if not bind.required:
                fixed[name] = bind.effective_value
            binds.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
        row, results = None, ()
        if isinstance(self.statement, ReturnsRows):
            returned = list(self.statement.exported_columns)
            names_of = [getattr(c, "key", None) or f"_{i}" for i, c in enumerate(returned)]
            row = collections.namedtuple("Row", names_of, rename=True)._make  # type: ignore[misc]
            results = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in returned
            )
        made = _Compiled(compiled.string, names, fixed, tuple(binds), row, results)
        self._compiled[columns] = made
        return made


def _direct(connection: Connection) -> bool:
    """Whether statements may go straight to the driver: SQLite, with nobody watching."""
    watched = connection.dispatch
    return (
        connection.dialect.name == "sqlite"
        and not connection.engine.echo
        and not (watched.before_cursor_execute or watched.after_cursor_execute)
    )


def _driver(connection: Connection) -> Any:
    """The `sqlite3.Connection` under `connection` (its transaction is the caller's)."""
    return connection.connection.driver_connection


def _values(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
    fixed = compiled.fixed
    values = []
    for name, convert in zip(compiled.names, compiled.binds, strict=True):
        value = params[name] if name in params else fixed[name]
        values.append(value if convert is None or value is None else convert(value))
    return tuple(values)

"""Hot-path statements compiled once per dialect and run on the driver's cursor.

`Connection.execute(statement)` re-derives the statement's cache key, looks up its
compiled form, builds an execution context and result metadata and pushes every bound
value through SQLAlchemy's parameter pipeline on each call. For the few statements every
job passes through (enqueue, claim, lease, succeed, result row) that costs about as much
client CPU as the driver's own work (bench/queue_throughput.py). A `Prepared` statement
is compiled by SQLAlchemy once per dialect, with SQLAlchemy's own bind and result
processors, and runs on the cursor of a connection SQLAlchemy keeps: the pool, the
transaction and the commit stay SQLAlchemy's, and driver errors come out as SQLAlchemy's
exceptions, with a lost connection invalidated, as `Connection.execute` would do.
Parameters never appear in those exceptions (they carry interaction tokens).
Not seen by SQLAlchemy's statement logging (`echo`) or cursor events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeDecorator, TypeEngine

Processor = Callable[[Any], Any]
Columns = tuple[tuple[str, Processor | None], ...]


@dataclass(frozen=True)
class Outcome:
    """What a write did."""

    rowcount: int
    lastrowid: int | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the binds a call supplies, in the driver's order if positional
    positional: bool
    fixed: dict[str, Any]  # binds whose value is part of the statement and not inlined
    processors: dict[str, Processor]


class Prepared:
    """One statement, compiled lazily for each dialect that runs it."""

    def __init__(self, statement: Executable, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[Dialect, _Compiled] = {}
        self._columns_by_dialect: dict[Dialect, Columns] = {}

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> Outcome:
        """Run a write inside the transaction `conn` holds."""
        cursor = self._run(conn, values)
        try:
            return Outcome(rowcount=cursor.rowcount, lastrowid=cursor.lastrowid)
        finally:
            cursor.close()

    def mappings(self, conn: Connection, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a SELECT inside the transaction `conn` holds; its rows as dicts of column
        key to value, converted by the columns' own result processors."""
        cursor = self._run(conn, values)
        try:
            raw_rows = cursor.fetchall()
            columns = self._result_columns(conn.dialect, cursor.description)
        finally:
            cursor.close()
        return [
            {
                key: value if process is None or value is None else process(value)
                for (key, process), value in zip(columns, raw, strict=True)
            }
            for raw in raw_rows
        ]

    def _run(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        # Outside a transaction nothing would commit or roll back what runs here.
        if not conn.in_transaction():
            raise RuntimeError("a Prepared statement runs inside engine.begin()")
        dialect = conn.dialect
        compiled = self._compiled(dialect)
        processors = compiled.processors
        fixed = compiled.fixed
        bound = []
        for name in compiled.names:
            value = values[name] if name not in fixed else fixed[name]
            process = processors.get(name)
            bound.append(value if process is None or value is None else process(value))
        params: Any = (
            tuple(bound) if compiled.positional else dict(zip(compiled.names, bound, strict=True))
        )
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None, "a connection in a transaction has a driver"
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, params)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _translated(conn, exc, compiled.sql, dbapi_connection, cursor) from exc
        return cursor

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect)
        if found is None:
            found = self._by_dialect[dialect] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys)  # type: ignore[attr-defined]
        sql: str = compiled.string
        fixed: dict[str, Any] = {}
        processors: dict[str, Processor] = {}
        for name, bind in compiled.binds.items():
            impl = bind.type.dialect_impl(dialect)
            constant = not bind.required
            literal = _literal(impl, bind.effective_value, dialect) if constant else None
            if literal is not None and not compiled.positional:
                # A constant goes into the SQL once instead of through the driver's
                # escaping on every call.
                sql = sql.replace(f"%({name})s", literal.replace("%", "%%"))
                continue
            if constant:
                fixed[name] = bind.effective_value
            process = impl.bind_processor(dialect)
            if process is not None:
                processors[name] = process
        names = (
            tuple(compiled.positiontup)
            if compiled.positional
            else tuple(name for name in compiled.binds if f"%({name})s" in sql)
        )
        return _Compiled(sql, names, bool(compiled.positional), fixed, processors)

    def _result_columns(self, dialect: Dialect, description: Any) -> Columns:
        found = self._columns_by_dialect.get(dialect)
        if found is None:
            selected = self._statement.selected_columns  # type: ignore[attr-defined]
            found = tuple(
                (column.key, column.type.dialect_impl(dialect).result_processor(dialect, desc[1]))
                for column, desc in zip(selected, description, strict=True)
            )
            self._columns_by_dialect[dialect] = found
        return found


def _literal(impl: TypeEngine[Any], value: Any, dialect: Dialect) -> str | None:
    """A constant as SQL text, for plain values of plain types; None keeps it bound."""
    if value is None:
        return "NULL"
    if isinstance(impl, TypeDecorator) or not isinstance(value, str | int | float):
        return None
    render = impl.literal_processor(dialect)
    return None if render is None else str(render(value))


def _translated(
    conn: Connection, exc: Exception, sql: str, dbapi_connection: Any, cursor: Any
) -> StatementError:
    """The driver's error as SQLAlchemy raises it; a lost connection is invalidated so
    the pool opens a new one instead of handing this one out again."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    return DBAPIError.instance(
        sql,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )

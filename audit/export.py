"""The audit export: a self-contained JSON Lines file holding the sealed log, its checkpoints and the log's keys.

Anyone can verify it offline (``casebridge audit verify --from-export FILE`` or an independent implementation of
docs/audit.md). Reading is strict: a truncated or edited line is an ExportError naming the line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit.checkpoint import CheckpointFormatError, parse_verifier_key
from audit.cosignature import cosigner_verifier_key, parse_cosigner_key
from audit.derived import ReviewMarkRow, StoredColumns, Unusable, export_columns, id_number, imported_columns
from audit.identity import LogName, LogNames, load_names, names_signed_under, origin_problem
from audit.merkle import HASH_SIZE, MerkleAccumulator
from audit.models import AuditCheckpoint, AuditCosignature
from audit.verify import (
    SealedEvent,
    checkpoint_keys,
    cosigner_public_keys,
    review_marks,
    sealed_row_chunks,
    snapshot_session,
    verifier_keys,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "AuditExport",
    "ExportError",
    "ExportSummary",
    "export_database",
    "read_export",
    "write_export",
]

FORMAT = "casebridge-audit-export"
# 2 added the agencies' co-signatures, 3 the log's names and what the DPO's queries read beside each event; older
# files are still read
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


class ExportError(ValueError):
    """An export file that cannot be read: ``line`` (1-based) says where, ``detail`` what is wrong."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(f"line {line}: {detail}")
        self.line = line
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AuditExport:
    origin: str  # the log's name when it was exported
    exported_at: str
    verifier_keys: list[str]
    public_keys: list[Ed25519PublicKey]
    events: list[SealedEvent]
    checkpoints: list[str]
    cosignatures: list[str]
    cosigner_keys: dict[str, list[Ed25519PublicKey]]
    names: LogNames  # every name the log had, each from the checkpoint size it took over (one for versions 1 and 2)
    # Version 3: the review marks on the events in the file (None before), and when the file was written.
    review_marks: list[ReviewMarkRow] | None = None
    written_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ExportSummary:
    size: int
    root: bytes  # RFC 6962 root over the exported leaf hashes
    file: Path

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "root": self.root.hex(), "file": str(self.file)}


# -- the lines (the wire format; new fields go last, with defaults) -------------------------------------------------


class _Origin(msgspec.Struct):
    origin: str
    from_size: int


class _Header(msgspec.Struct, tag_field="type", tag="header"):
    format: str
    version: int
    origin: str
    exported_at: str
    public_keys: list[str]
    cosigner_keys: list[str] = []  # verifier keys of the agencies that co-signed checkpoints (version 2; type 0x04: 3)
    origins: list[_Origin] = []  # the log's names in the order adopted, the last one `origin` (version 3)


class _ReviewMark(msgspec.Struct):
    log_tenant_id: str | None
    reviewer_kind: str
    reviewer_id: str | None
    at: str


_Stored = str | Unusable | None  # a stored value of the wrong type for its column is written as {"stored_as": type}


class _Columns(msgspec.Struct):
    """What the DPO's queries read beside the event, as stored (audit/derived.py)."""

    log_tenant_id: _Stored
    recorded_at: _Stored
    action: _Stored
    outcome: _Stored
    actor_id: _Stored
    actor_tenant_id: _Stored
    resource_id: _Stored
    subjects: list[str | Unusable]
    review_mark: _ReviewMark | None = None


class _Event(msgspec.Struct, tag_field="type", tag="event"):
    seq: int
    event_id: str
    canonical: str | None
    chain_hash: str
    leaf_hash: str
    columns: _Columns | None = None  # version 3; null when the event row is gone


class _Checkpoint(msgspec.Struct, tag_field="type", tag="checkpoint"):
    note: str


class _Cosignature(msgspec.Struct, tag_field="type", tag="cosignature"):
    note: str


class _End(msgspec.Struct, tag_field="type", tag="end"):
    events: int
    checkpoints: int
    root: str
    cosignatures: int = 0


_Line = _Header | _Event | _Checkpoint | _Cosignature | _End
_decode_line = msgspec.json.Decoder(_Line).decode
_encode = msgspec.json.Encoder().encode


# -- writing --------------------------------------------------------------------------------------------------------


class _Writer:
    """Writes the lines in order and keeps the counts and tree for the end line."""

    def __init__(
        self,
        handle: IO[bytes],
        *,
        names: LogNames,
        exported_at: dt.datetime,
        keys: Sequence[str],
        cosigner_keys: Sequence[str] = (),
    ) -> None:
        self._handle = handle
        self._tree = MerkleAccumulator()
        self._checkpoints = 0
        self._cosignatures = 0
        stamp = _stamp(exported_at)
        if names.current is None:
            raise ValueError("a log without a name cannot be exported")
        origins = [_Origin(origin=n.origin, from_size=n.from_size) for n in names.names]
        self._line(
            _Header(
                format=FORMAT,
                version=VERSION,
                origin=names.current,
                exported_at=stamp,
                public_keys=list(keys),
                cosigner_keys=list(cosigner_keys),
                origins=origins,
            )
        )

    def _line(self, line: _Line) -> None:
        self._handle.write(_encode(line) + b"\n")

    def event(self, event: SealedEvent, review_mark: ReviewMarkRow | None = None) -> None:
        self._line(
            _Event(
                seq=event.seq,
                event_id=str(event.event_id),
                canonical=event.canonical,
                chain_hash=event.chain_hash.hex(),
                leaf_hash=event.leaf_hash.hex(),
                columns=None if event.stored is None else _columns(event.stored, review_mark),
            )
        )
        self._tree.append(event.leaf_hash)

    def checkpoint(self, note: str) -> None:
        self._line(_Checkpoint(note=note))
        self._checkpoints += 1

    def cosignature(self, note: str) -> None:
        self._line(_Cosignature(note=note))
        self._cosignatures += 1

    def end(self) -> tuple[int, bytes]:
        root = self._tree.root()
        self._line(
            _End(
                events=self._tree.size, checkpoints=self._checkpoints, root=root.hex(), cosignatures=self._cosignatures
            )
        )
        return self._tree.size, root


def _columns(stored: StoredColumns, mark: ReviewMarkRow | None) -> _Columns:
    values = export_columns(stored)
    return _Columns(
        **values,
        review_mark=None
        if mark is None
        else _ReviewMark(
            log_tenant_id=_text(mark.log_tenant_id),
            reviewer_kind=mark.reviewer_kind,
            reviewer_id=_text(mark.reviewer_id),
            at=_stamp(mark.at),
        ),
    )


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """Write to a temporary file next to ``path`` and move it into place only when complete (owner-only)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def write_export(
    path: Path,
    *,
    origin: str | LogNames,
    exported_at: dt.datetime,
    verifier_keys: Sequence[str],
    events: Iterable[SealedEvent],
    checkpoints: Iterable[str],
    cosignatures: Iterable[str] = (),
    cosigner_keys: Sequence[str] = (),
    review_marks: Iterable[ReviewMarkRow] = (),
) -> ExportSummary:
    """Write the export file: header, each sealed event in seq order (with the review mark on it), each checkpoint
    note, each co-signature, the end line."""
    marks = {mark.event_id: mark for mark in review_marks}
    with _replacing(path) as handle:
        writer = _Writer(
            handle, names=LogNames.of(origin), exported_at=exported_at, keys=verifier_keys, cosigner_keys=cosigner_keys
        )
        for event in events:
            writer.event(event, marks.get(event.event_id))
        for note in checkpoints:
            writer.checkpoint(note)
        for note in cosignatures:
            writer.cosignature(note)
        size, root = writer.end()
    return ExportSummary(size=size, root=root, file=path)


async def export_database(
    factory: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    exported_at: dt.datetime,
    origin: str | LogNames | None = None,
) -> ExportSummary:
    """Export the live log from one consistent snapshot, streaming the events (memory stays flat).

    The header names the log as stored with it; ``origin`` overrides that. ValueError when the log has no name."""
    async with await snapshot_session(factory) as session:
        names = await load_names(session) if origin is None else LogNames.of(origin)
        if names.current is None:
            raise ValueError("the audit log has no name yet: no sealer has run on this database")
        keys = verifier_keys(names.current, await checkpoint_keys(session))
        cosigned = (await session.execute(select(AuditCosignature.cosigner_tenant_id, AuditCosignature.note))).all()
        agencies = await cosigner_public_keys(session, sorted({tenant_id for tenant_id, _ in cosigned}))
        agency_keys = [cosigner_verifier_key(name, key) for name, public in sorted(agencies.items()) for key in public]
        marks = {mark.event_id.int: mark for mark in await review_marks(session)}
        with _replacing(path) as handle:
            writer = _Writer(handle, names=names, exported_at=exported_at, keys=keys, cosigner_keys=agency_keys)
            chunks = sealed_row_chunks(session)
            try:
                async for chunk in chunks:
                    for seq, event_id, canonical, chain_hash, leaf_hash, *stored in chunk:
                        key = id_number(event_id)
                        columns = None if canonical is None else StoredColumns(*stored)
                        event = SealedEvent(seq, uuid.UUID(int=key), canonical, chain_hash, leaf_hash, columns)
                        writer.event(event, marks.get(key))
            finally:
                await chunks.aclose()
            for note in await session.scalars(
                select(AuditCheckpoint.note).order_by(AuditCheckpoint.created_at, AuditCheckpoint.size)
            ):
                writer.checkpoint(note)
            for _, note in sorted(cosigned):
                writer.cosignature(note)
            size, root = writer.end()
    return ExportSummary(size=size, root=root, file=path)


# -- reading --------------------------------------------------------------------------------------------------------


def _hash(value: str, line: int, name: str) -> bytes:
    if len(value) != 2 * HASH_SIZE:
        raise ExportError(line, f"{name} must be {2 * HASH_SIZE} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ExportError(line, f"{name} must be {2 * HASH_SIZE} hex digits") from None


def _event(line: _Event, number: int, version: int) -> tuple[SealedEvent, ReviewMarkRow | None]:
    try:
        event_id = uuid.UUID(line.event_id)
    except ValueError:
        raise ExportError(number, "event_id is not a UUID") from None
    columns = line.columns
    if columns is not None and line.canonical is None:
        raise ExportError(number, "an event line without its event cannot carry the event's stored columns")
    stored = None
    if columns is not None and version >= 3:
        values = (
            columns.log_tenant_id,
            columns.recorded_at,
            columns.action,
            columns.outcome,
            columns.actor_id,
            columns.actor_tenant_id,
            columns.resource_id,
        )
        stored = imported_columns(values, columns.subjects)
    event = SealedEvent(
        seq=line.seq,
        event_id=event_id,
        canonical=line.canonical,
        chain_hash=_hash(line.chain_hash, number, "chain_hash"),
        leaf_hash=_hash(line.leaf_hash, number, "leaf_hash"),
        stored=stored,
    )
    mark = columns.review_mark if columns is not None and version >= 3 else None
    return event, None if mark is None else _review_mark(event_id, mark, number)


def _review_mark(event_id: uuid.UUID, mark: _ReviewMark, number: int) -> ReviewMarkRow:
    try:
        return ReviewMarkRow(
            event_id=event_id,
            log_tenant_id=None if mark.log_tenant_id is None else uuid.UUID(mark.log_tenant_id),
            reviewer_kind=mark.reviewer_kind,
            reviewer_id=None if mark.reviewer_id is None else uuid.UUID(mark.reviewer_id),
            at=_time(mark.at, number, "the review mark's time"),
        )
    except ValueError:
        raise ExportError(number, "the review mark names an id that is not a UUID") from None


def _time(text: str, number: int, name: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ExportError(number, f"{name} is not an RFC 3339 time with an offset")
    return at


def _header(
    line: _Line, number: int
) -> tuple[_Header, LogNames, list[Ed25519PublicKey], dict[str, list[Ed25519PublicKey]]]:
    if not isinstance(line, _Header):
        raise ExportError(number, "the file does not start with the export header")
    if line.format != FORMAT:
        raise ExportError(number, f"not a {FORMAT} file")
    if line.version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise ExportError(number, f"export version {line.version} is not supported (this program reads {readable})")
    keys: list[Ed25519PublicKey] = []
    for index, text in enumerate(line.public_keys, 1):
        try:
            keys.append(parse_verifier_key(text)[1])
        except CheckpointFormatError as exc:
            raise ExportError(number, f"public key {index}: {exc.detail}") from None
    agencies: dict[str, list[Ed25519PublicKey]] = {}
    for index, text in enumerate(line.cosigner_keys, 1):
        try:
            name, key = parse_cosigner_key(text) if line.version >= 3 else parse_verifier_key(text)
        except CheckpointFormatError as exc:
            raise ExportError(number, f"co-signer key {index}: {exc.detail}") from None
        agencies.setdefault(name, []).append(key)
    return line, _names(line, number), keys, agencies


def _names(line: _Header, number: int) -> LogNames:
    """The log's names as version 3 lists them (before version 3: ``origin``, see ``read_export``)."""
    if line.version < 3:
        problem = origin_problem(line.origin)
        if problem:
            raise ExportError(number, f"the origin cannot name a log: {problem}")
        return LogNames.of(line.origin)
    names = tuple(LogName(n.origin, n.from_size) for n in line.origins)
    for index, name in enumerate(names, 1):
        problem = origin_problem(name.origin) or (None if name.from_size >= 1 else "from_size must be at least 1")
        if problem:
            raise ExportError(number, f"name {index} of the log: {problem}")
    if not names or names[-1].origin != line.origin:
        raise ExportError(number, "the header's origin must be the last of its origins")
    return LogNames(names)


def read_export(path: Path) -> AuditExport:
    """Read and check the structure of an export file; ExportError names the first line that is wrong.

    This checks the file's form only. Whether the log in it is intact is ``verify_log``'s job.
    """
    header: _Header | None = None
    names = LogNames()
    keys: list[Ed25519PublicKey] = []
    agencies: dict[str, list[Ed25519PublicKey]] = {}
    events: list[SealedEvent] = []
    marks: list[ReviewMarkRow] = []
    checkpoints: list[str] = []
    cosignatures: list[str] = []
    end: _End | None = None
    number = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                raise ExportError(number, "the line is incomplete: the file was cut off here")
            try:
                line = _decode_line(raw)
            except msgspec.ValidationError as exc:
                raise ExportError(number, f"unexpected content ({exc})") from None
            except msgspec.DecodeError:
                raise ExportError(number, "not a valid JSON line (the file was cut off or edited here)") from None
            if end is not None:
                raise ExportError(number, "nothing may follow the end line")
            if header is None:
                header, names, keys, agencies = _header(line, number)
            elif isinstance(line, _Event):
                if checkpoints:
                    raise ExportError(number, "an event line after the checkpoint lines")
                event, mark = _event(line, number, header.version)
                events.append(event)
                if mark is not None:
                    marks.append(mark)
            elif isinstance(line, _Checkpoint):
                if cosignatures:
                    raise ExportError(number, "a checkpoint line after the co-signature lines")
                checkpoints.append(line.note)
            elif isinstance(line, _Cosignature):
                cosignatures.append(line.note)
            elif isinstance(line, _End):
                end = line
            else:
                raise ExportError(number, "a second header line")
    if header is None:
        raise ExportError(1, "the file is empty")
    if end is None:
        raise ExportError(number, f"the file ends after line {number} without its end line: it was cut off")
    if (end.events, end.checkpoints, end.cosignatures) != (len(events), len(checkpoints), len(cosignatures)):
        raise ExportError(
            number,
            f"the end line counts {end.events} events, {end.checkpoints} checkpoints and {end.cosignatures} "
            f"co-signatures, but the file holds {len(events)}, {len(checkpoints)} and {len(cosignatures)}: "
            "lines were removed or added",
        )
    if header.version < 3:
        # Until version 3 the exporting command wrote its own idea of the origin, from its own base URL or port,
        # which could differ from the log's: the names are those the checkpoints were signed under, as an upgraded
        # database adopts them (docs/audit.md, "The log's name").
        signed = names_signed_under(checkpoints)
        names = signed if signed.names else names
    return AuditExport(
        origin=header.origin,
        exported_at=header.exported_at,
        verifier_keys=header.public_keys,
        public_keys=keys,
        events=events,
        checkpoints=checkpoints,
        cosignatures=cosignatures,
        cosigner_keys=agencies,
        names=names,
        review_marks=marks if header.version >= 3 else None,
        written_at=_time(header.exported_at, 1, "exported_at") if header.version >= 3 else None,
    )

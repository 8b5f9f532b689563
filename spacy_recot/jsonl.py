"""JSON lines: the one reader of the project's record files, and its writers.

Every file of records the package reads (a corpus to annotate, NER-CoT records
and their stages' outputs, a GRPO sample, Pile-NER, instruction data) is read
by `read_jsonl` (`load_jsonl`: all its records at once): one JSON object a line, blank lines skipped, a byte order mark
before the first line ignored. A line that is not UTF-8, not JSON, nested too
deeply for the parser or not an object fails, its message starting with
`file:line:`. With `json_file`, a file that is one JSON document (a list of
objects, or one object) is read too, each object numbered by the line it
starts on.

Writing: `jsonl_text`/`write_jsonl` for whole files, `JsonlAppender` for a
file written one flushed record at a time and resumed after a crash.
"""

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Type

Record = Dict[str, Any]
# JSON's whitespace (json's own pattern): what may stand between a list's items.
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class JsonlError(ValueError):
    """A line of a JSON lines file is not a JSON object; the message names file and line."""


def decode_line(path: Path, number: int, raw: bytes, error: Type[ValueError] = JsonlError) -> str:
    """Line `number` of `path` as text, without its line break (and, on the
    first line, without a byte order mark)."""
    try:
        line = raw.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError as err:
        raise error(f"{path}:{number}: not UTF-8 text ({err})") from None
    return line.removeprefix("\ufeff") if number == 1 else line


def read_lines(path: Path, error: Type[ValueError] = JsonlError) -> Iterator[Tuple[int, str]]:
    """The lines of a text file with their numbers (from 1), read one at a time;
    a line that is not UTF-8 fails naming file and line. Only "\\n" ends a line."""
    with Path(path).open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, decode_line(path, number, raw, error)


def parse_line(
    path: Path, number: int, line: str, error: Type[ValueError] = JsonlError, reason: str = "not a JSON object"
) -> Optional[Record]:
    """The object on line `number`, or None for a blank line."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as err:
        raise error(f"{path}:{number}: {reason} ({err})") from None
    except RecursionError:
        raise error(f"{path}:{number}: {reason} (nested too deeply)") from None
    return _object(path, number, record, error)


def _object(path: Path, number: int, record: Any, error: Type[ValueError]) -> Record:
    if not isinstance(record, dict):
        raise error(f"{path}:{number}: not a JSON object (a JSON {type(record).__name__})")
    return record


def read_jsonl(
    path: Path, *, json_file: bool = False, error: Type[ValueError] = JsonlError
) -> Iterator[Tuple[int, Record]]:
    """The objects of a JSON lines file with their line numbers, read one line at
    a time; the first bad line fails with `error`, naming file and line.

    json_file (bool): Also read a file that is one JSON document: a list of
        objects (each numbered by the line it starts on) or a single object.
    error (Type[ValueError]): The exception raised (callers keep their own).
    """
    path = Path(path)
    if json_file:
        document = _json_document(path)
        if document is not None:
            for number, record in document:
                yield number, _object(path, number, record, error)
            return
    reason = "not JSON (nor is the whole file)" if json_file else "not a JSON object"
    for number, line in read_lines(path, error):
        record = parse_line(path, number, line, error, reason)
        if record is not None:
            yield number, record


def load_jsonl(path: Path, *, json_file: bool = False, error: Type[ValueError] = JsonlError) -> List[Record]:
    """All the objects of a file `read_jsonl` reads, in order."""
    return [record for _, record in read_jsonl(path, json_file=json_file, error=error)]


def _json_document(path: Path) -> Optional[List[Tuple[int, Any]]]:
    """The items of a file that is one JSON list, with the line each starts on;
    `[(1, value)]` for another JSON value; None when the file is not one JSON
    document (JSON lines, or not JSON at all: the lines say where)."""
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    start = _WHITESPACE.match(text).end()
    if not text.startswith("[", start):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return [(text.count("\n", 0, start) + 1, value)]
    decoder = json.JSONDecoder()
    items: List[Tuple[int, Any]] = []
    line, counted = 1, 0
    pos = _WHITESPACE.match(text, start + 1).end()
    try:
        if text.startswith("]", pos):
            pos += 1
        else:
            while True:
                value, end = decoder.raw_decode(text, pos)
                line += text.count("\n", counted, pos)
                counted = pos
                items.append((line, value))
                pos = _WHITESPACE.match(text, end).end()
                if text.startswith(",", pos):
                    pos = _WHITESPACE.match(text, pos + 1).end()
                elif text.startswith("]", pos):
                    pos += 1
                    break
                else:
                    return None
    except (ValueError, RecursionError):
        return None
    # Anything after the list: JSON lines whose first line is a list.
    return items if _WHITESPACE.match(text, pos).end() == len(text) else None


def jsonl_text(records: Iterable[Record]) -> str:
    """Records as JSON lines (UTF-8 characters written as they are)."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    """Write `records` to `path` as JSON lines (its folder made); the number written."""
    records = list(records)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jsonl_text(records), encoding="utf-8")
    return len(records)


class JsonlAppender:
    """Appends records to a JSON lines file, one flushed line each, so that a
    crash loses nothing written and a rerun resumes: `done` holds the records
    there and written, by their `key` field. A last line cut off by a crash (no
    line break) is dropped, but only once every complete line has been read: a
    bad complete line (or one without `key`) fails, and nothing is removed."""

    def __init__(self, path: Path, key: str, error: Type[ValueError] = JsonlError):
        self.path = Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: Dict[Any, Record] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            lines = data.split(b"\n")
            tail = lines.pop()  # after the last line break: empty, or a line cut off by a crash
            try:
                for number, raw in enumerate(lines, 1):
                    record = parse_line(self.path, number, decode_line(self.path, number, raw, error), error)
                    if record is None:
                        continue
                    if not isinstance(record.get(key), (str, int, float)):
                        raise error(f"{self.path}:{number}: a record without a {key!r} (a string or number)")
                    self.done[record[key]] = record
            except error as err:
                raise error(f"{err}; fix or remove the line to resume") from None
            if tail:
                self.path.write_bytes(data[: len(data) - len(tail)])
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Record) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[record[self.key]] = record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

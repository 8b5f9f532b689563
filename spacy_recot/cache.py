"""A response cache: a model's answers kept on disk, so a rerun over the same
docs (a crashed corpus run, an evaluation with another threshold) reads them
instead of generating them again.

An answer is stored under the SHA-256 of (the backend's identity: its class,
the settings that change answers and a fingerprint of its weights; the
prompt; the labels and words the request carries; its answer budget). One
file per answer, written to a temporary name and renamed into place: several
processes (nlp.pipe(n_process=...), Ray actors, two runs) may write at once,
a reader sees a whole file or none. A file is untrusted: one that cannot be
read, or holds anything but an answer text with token scores a backend could
have written, counts as a miss (the answer is generated again and the file
replaced).
"""

import hashlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .answers import Answer, checked_token_scores
from .chunks import Request


class ResponseCache:
    """Answers on disk, one JSON file each, under `path/<2 hex>/<key>.json`."""

    def __init__(self, path: Union[str, Path]):
        # Absolute: Ray actors and spawned workers may start in another folder.
        self.path = Path(path).resolve()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"The response cache folder '{self.path}' (cache_dir) cannot be made: {err}") from err
        self.stats: Counter = Counter()

    def key(self, identity: Dict[str, Any], request: Request) -> str:
        """The key of `request`'s answer from the model `identity` describes."""
        data = {
            "model": identity,
            "prompt": request.prompt,
            "labels": list(request.schema),
            "words": list(request.chunk.words),
            "answer_budget": request.answer_budget,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[Answer]:
        """The stored answer, or None: never stored, unreadable (counted
        `unreadable`), or not a valid answer (counted `invalid`)."""
        try:
            data = json.loads(self._file(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.stats["misses"] += 1
            return None
        except (OSError, ValueError, RecursionError):
            self.stats["unreadable"] += 1
            return None
        text = data.get("text") if isinstance(data, dict) else None
        scores = checked_token_scores(len(text), data.get("token_scores")) if isinstance(text, str) else None
        if scores is None:
            self.stats["invalid"] += 1
            return None
        self.stats["hits"] += 1
        return Answer.scored(text, scores)

    def put(self, key: str, answer: str) -> None:
        """Store an answer (with its token scores, when it has them)."""
        target = self._file(key)
        target.parent.mkdir(exist_ok=True)
        data = {"text": str(answer), "token_scores": [list(s) for s in getattr(answer, "token_scores", ())]}
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())  # on disk before the name points at it
            os.replace(tmp, target)  # atomic: readers see the old file, the new one, or none
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.stats["stored"] += 1

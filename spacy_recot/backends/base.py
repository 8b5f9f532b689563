"""The backend base: what the component needs of a model, whatever runs it.

A backend is called with a batch of `Request`s and returns one answer per
request. Weights are not loaded when the backend is built (so that a config can
be resolved, and `spacy.load` can read the weights from the pipeline folder,
without touching the network); `load()` reads them from where the settings say,
`from_disk()` from a pipeline folder. A backend never looks inside a request's
chunk: what the answer may be comes as the request's `constraint`, made by the
task.
"""

import json
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly

from ..chunks import Request
from ..tasks.base import OUTPUT_FORMATS


class Backend:
    """What the component needs of a backend. Subclasses override what applies.

    A backend is called with a batch of `Request`s and returns one text per
    request. Calls are serialised by a lock (a tokenizer is not safe to share
    between threads), and a pickled backend (`nlp.pipe(n_process=2)` under
    spawn) carries its settings, not its weights: a worker loads them lazily
    from where the parent loaded them.
    """

    # The output formats the backend can write.
    output_formats: Tuple[str, ...] = OUTPUT_FORMATS
    # The prompt used when the component's config gives none (a registry name).
    default_prompt: str = "spacy_recot.ZeroShotJSONPrompt.v1"
    # The largest prompt, in the backend's tokens; None for no limit.
    max_input_tokens: Optional[int] = None
    # The longest answer, in the backend's tokens; None for no limit.
    max_new_tokens: Optional[int] = None
    # Attributes that hold loaded state: dropped when pickled, rebuilt on use.
    _transient: Tuple[str, ...] = ()

    # The backend's settings (a dataclass; `identity` reads the fields its
    # IDENTITY names). They read as attributes too: `backend.constrained`.
    settings: Any = None

    # The settings' dataclass; a backend is built from one, or from its fields.
    settings_class: Any = None

    def _settings(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """The settings a backend is built with: given as one object, or as the
        settings class's fields (`HFCausalBackend("Qwen/Qwen3-1.7B", dtype="float32")`)."""
        if len(args) == 1 and not kwargs and isinstance(args[0], self.settings_class):
            return args[0]
        return self.settings_class(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not found the usual way: a setting, read as an attribute.
        settings = self.__dict__.get("settings")
        if settings is not None and name in getattr(settings, "__dataclass_fields__", {}):
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def is_loaded(self) -> bool:
        return True

    def load(self) -> None:
        """Load the weights from the configured source (may use the network)."""

    def ensure_loaded(self) -> None:
        """Load on first use (once, even from several threads)."""
        with self.lock:
            if not self.is_loaded:
                self.load()

    def identity(self) -> Dict[str, Any]:
        """What the answers depend on: the backend's class, the settings listed
        by name in its settings' `IDENTITY`, and a fingerprint of its weights
        (the response cache's key). Settings that change how answers are made
        but not which (batching, guesses, timeouts) are not listed, so changing
        them keeps the cache."""
        from .. import __version__

        settings = self.settings
        listed = {name: getattr(settings, name) for name in getattr(settings, "IDENTITY", ())}
        return {
            "backend": f"{type(self).__module__}.{type(self).__qualname__}",
            # Decoding code changes between releases: answers cached by another release are not reused.
            "version": __version__,
            "settings": json.loads(json.dumps(listed, sort_keys=True, default=str)),
            "weights": self.fingerprint(),
        }

    def fingerprint(self) -> Optional[str]:
        """A digest of the loaded weights, or None for a backend without any."""
        return None

    def requirements(self) -> List[str]:
        """The pip requirements this backend needs at run time."""
        return []

    def count_tokens(self, texts: Sequence[str]) -> List[int]:
        """The length of each text in the backend's tokens, special tokens not counted."""
        return [len(text.split()) for text in texts]

    def prompt_tokens(self, prompt: str) -> int:
        """What a prompt costs in tokens, with the special tokens or chat
        template the backend wraps it in."""
        # 2: the special tokens (</s>) a seq2seq tokenizer adds around a prompt
        return self.count_tokens([prompt])[0] + 2

    def roundtrip(self, words: Sequence[str]) -> List[str]:
        """The words as the model can write them back (GNER's back-tokenization)."""
        return list(words)

    @property
    def lock(self) -> threading.RLock:
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_lock", threading.RLock())
        return lock

    def __call__(self, requests: Sequence[Request]) -> List[str]:
        """One answer per request, generated in one batch. A backend that sends
        requests one by one (a server) may give an exception in place of an
        answer: that request failed for good, and only its doc goes to the
        error handler."""
        if not requests:
            return []
        self.ensure_loaded()
        with self.lock:
            stats = self.__dict__.setdefault("stats", Counter())
            stats["backend_calls"] += 1
            stats["requests"] += len(requests)
            stats["largest_batch"] = max(stats["largest_batch"], len(requests))
            answers = self.generate(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"{type(self).__name__} gave {len(answers)} answers for {len(requests)} requests")
        return answers

    def generate(self, requests: Sequence[Request]) -> List[str]:
        raise NotImplementedError

    @staticmethod
    def free_text(requests: Sequence[Request]) -> bool:
        """Whether the batch asks for free text (no request has a constraint: a
        label definition), which no grammar or forced decoder applies to. A
        batch mixes none with constrained requests: the component sends them
        apart."""
        free = [r.constraint is None for r in requests]
        if any(free) and not all(free):
            raise ValueError("a batch mixes requests with and without a constraint: send them apart")
        return bool(free) and all(free)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_bytes_dir") + self._transient:
            state.pop(key, None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        for key in self._transient:
            self.__dict__.setdefault(key, None)

    def to_disk(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def from_disk(self, path: Path) -> None:
        pass

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(Path(tmp))
            return _folder_to_bytes(Path(tmp))

    def from_bytes(self, data: bytes) -> None:
        # The folder lives as long as the backend: loaded weights may be
        # memory-mapped from it, and a worker process reloads from it.
        self._bytes_dir = tempfile.TemporaryDirectory(prefix="spacy_recot_")
        _bytes_to_folder(data, Path(self._bytes_dir.name))
        self.from_disk(Path(self._bytes_dir.name))


def _folder_to_bytes(folder: Path) -> bytes:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return srsly.msgpack_dumps({"files": files})


def _plain_relative_path(name: Any) -> bool:
    """Whether `name` (from a byte payload) names a file inside a folder on any
    system: "/"-separated parts, none empty, "." or "..", no drive, no backslash."""
    if not isinstance(name, str) or not name or "\\" in name or ":" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _bytes_to_folder(data: bytes, folder: Path) -> None:
    """Write the files of a `_folder_to_bytes` payload into `folder`. The payload
    is untrusted: a name that is not a plain relative path (absolute, `..`, a
    drive) is refused before anything is written."""
    payload = srsly.msgpack_loads(data)
    files = payload.get("files") if isinstance(payload, dict) else None
    if not isinstance(files, dict):
        raise ValueError("The model's bytes hold no file table (not written by to_bytes)")
    for name, content in files.items():
        if not _plain_relative_path(name) or not isinstance(content, bytes):
            raise ValueError(f"The model's bytes name a file {name!r}, which is not a plain relative path: refused")
    root = folder.resolve()
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # The folder is new and only we write into it, so no link can lead outside; checked anyway.
        if not target.parent.resolve().is_relative_to(root):
            raise ValueError(f"The model's bytes name a file {name!r} outside their folder: refused")
        target.write_bytes(content)

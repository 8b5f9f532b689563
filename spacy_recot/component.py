"""The `recot_ner` pipeline component.

It renders each doc (or each chunk of a long doc) into a prompt, asks the
model backend for text, parses that text into labelled spans and sets
`doc.ents`. What was asked, answered, repaired and dropped is kept per doc in
`doc.user_data["recot"][<component name>]` as plain JSON values.
"""

import warnings
import weakref
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import minibatch, registry
from tqdm import tqdm

from .backends import Backend
from .cache import ResponseCache
from .chunks import Chunk, Limits, Request, fitting_chunks
from .doc_entities import ALIGNMENT_MODES, OVERLAP_POLICIES, USER_DATA_KEY, doc_entities
from .errors import ModelLoadError
from .labels import definition_prompt, read_definition
from .tasks import Reading, Task

# Docs buffered per backend batch when the caller gives no buffer size.
BUFFER_FACTOR = 8
# A label definition's budget in tokens (one sentence; the runaway cap is twice it).
DEFINITION_BUDGET = 60

# The pipeline each component belongs to, held weakly and outside the
# component, so that the component pickles (nlp.pipe(n_process=...) under
# spawn) and keeps no pipeline alive.
_PIPELINES: "weakref.WeakKeyDictionary[Any, weakref.ref]" = weakref.WeakKeyDictionary()


class RecotNER(Pipe):
    """Sets `doc.ents` from what a generative model writes about each doc.

    A thin pipe over three parts: the prompt renders each chunk of a doc, the
    backend turns a batch of prompts into answers, and the reader of the
    prompt's output format (`spacy_recot.tasks`) turns each answer into
    character spans.
    """

    def __init__(
        self,
        vocab: Any,
        model: Backend,
        prompt: Optional[Any] = None,
        *,
        name: str = "recot_ner",
        labels: Sequence[str] = (),
        label_descriptions: Optional[Dict[str, str]] = None,
        batch_size: int = 16,
        window_overlap: int = 8,
        threshold: float = 0.0,
        overlaps: str = "score",
        alignment_mode: str = "contract",
        all_occurrences: bool = False,
        spans_key: Optional[str] = None,
        store_io: bool = False,
        show_progress: bool = False,
        cache_dir: Optional[Union[str, Path]] = None,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        # The task: the prompt, the format of its answers and how they are read
        # (the config's key is `prompt`: a registered prompt returns a task).
        self.task = prompt if prompt is not None else registry.misc.get(model.default_prompt)()
        self.labels = list(labels)
        self.label_descriptions = self._check_descriptions(label_descriptions)
        for key, value, least in (("batch_size", batch_size, 1), ("window_overlap", window_overlap, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"components.{name}.{key} must be an integer of at least {least}, not {value!r}")
        if alignment_mode not in ALIGNMENT_MODES:
            raise ValueError(
                f"components.{name}.alignment_mode must be one of {ALIGNMENT_MODES}, not {alignment_mode!r}"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"components.{name}.threshold must be a number from 0 to 1, not {threshold!r}")
        if overlaps not in OVERLAP_POLICIES:
            raise ValueError(f"components.{name}.overlaps must be one of {OVERLAP_POLICIES}, not {overlaps!r}")
        self.overlaps = overlaps
        self.batch_size = batch_size
        self.window_overlap = window_overlap
        self.threshold = float(threshold)
        self.alignment_mode = alignment_mode
        self.all_occurrences = all_occurrences
        self.spans_key = spans_key
        self.store_io = store_io
        self.show_progress = show_progress
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {}
        # What `describe_labels` did with the model's definitions (kept, trimmed, unusable).
        self.description_counts: Counter = Counter()

    @property
    def task(self) -> Task:
        """The task: the prompt, the format of its answers and how they are read."""
        return self._task

    @task.setter
    def task(self, task: Task) -> None:
        self._check_formats(task)
        if hasattr(self, "_labels"):  # (a new task must accept the labels there are)
            task.check_labels(self._labels, f"components.{self.name}.labels")
        self._task = task

    # The config's key is `prompt` (a registered prompt returns a task).
    prompt = task

    def _check_formats(self, task: Task) -> None:
        """The task's output format must be one the backend can write."""
        wanted = task.output_format
        if wanted not in self.model.output_formats:
            # What the backend writes, as its default prompt's task names it.
            hint = registry.misc.get(self.model.default_prompt)().suggestion
            raise ValueError(
                f"components.{self.name}: the prompt {type(task).__name__} asks for '{wanted}' "
                f"output, but the model backend {type(self.model).__name__} writes only "
                f"{' or '.join(repr(f) for f in self.model.output_formats)} output. Use "
                f"{hint} (or leave components.{self.name}.prompt unset for the backend's default)"
            )

    @property
    def output_format(self) -> str:
        """How answers are written and read (the task's format)."""
        return self.task.output_format

    @property
    def labels(self) -> List[str]:
        """The entity types the model is asked for."""
        return self._labels

    @labels.setter
    def labels(self, value: Sequence[str]) -> None:
        self._labels = self.task.check_labels(value, f"components.{self.name}.labels")
        self._sync_config()

    @property
    def label_data(self) -> List[str]:
        return list(self._labels)

    def add_label(self, label: str) -> int:
        """Add an entity type; returns 1 if it was new, 0 if it was there."""
        if not isinstance(label, str):
            raise ValueError(f"components.{self.name}: a label must be a string, not {label!r}")
        if label.strip() in self._labels:
            return 0
        self.labels = self._labels + [label]
        return 1

    def _check_descriptions(self, descriptions: Optional[Dict[str, str]]) -> Optional[Dict[str, str]]:
        if not descriptions:
            return None
        unknown = sorted(set(descriptions) - set(self.labels))
        if unknown:
            raise ValueError(
                f"components.{self.name}.label_descriptions describes {unknown}, which are not in labels {self.labels}"
            )
        return dict(descriptions)

    # -- the pipeline's config ----------------------------------------------

    def attach(self, nlp: Language) -> None:
        """Remember the pipeline, so that label changes reach `nlp.config` (the
        single source of truth that `nlp.to_disk` writes) and `spacy package`
        lists what the backend needs."""
        _PIPELINES[self] = weakref.ref(nlp)
        requirements = nlp.meta.setdefault("requirements", [])
        for requirement in self.model.requirements():
            if requirement not in requirements:
                requirements.append(requirement)

    def _sync_config(self) -> None:
        ref = _PIPELINES.get(self)
        nlp = ref() if ref is not None else None
        if nlp is None:
            return
        for name, proc in nlp.components:
            if proc is self:
                config = nlp.get_pipe_config(name)
                config["labels"] = list(self._labels)
                if "label_descriptions" in config:
                    config["label_descriptions"] = getattr(self, "label_descriptions", None)
                return

    # -- lifecycle --------------------------------------------------------

    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
        describe_labels: bool = False,
    ) -> None:
        """Load the model weights, and set the labels when there are none.

        labels (Optional[Sequence[str]]): Replace the configured labels (as
            `[initialize.components.<name>.labels]` does).
        get_examples: When neither the config nor `labels` gives labels, they
            are read from the examples' reference entities (sorted).
        describe_labels (bool): Have the model define each label that
            `label_descriptions` does not (`describe_labels()`).
        """
        if nlp is not None:
            self.attach(nlp)
        if labels is not None:
            self.labels = list(labels)
        elif get_examples is not None and not self.labels:
            self.labels = sorted({e.label_ for eg in get_examples() for e in eg.reference.ents})
        self.label_descriptions = self._check_descriptions(self.label_descriptions)
        self._sync_config()
        self._ensure_loaded()
        if describe_labels:
            self.describe_labels()

    def describe_labels(self) -> Dict[str, str]:
        """Have the model write a one-sentence definition of each label that has
        none, shown in every prompt from then on. Written once: they go into
        `label_descriptions` (so into `nlp.config` and the pipeline folder),
        and the answers into `cache_dir` when there is one. A label the model
        gives no usable definition for stays undescribed, with a warning.
        Returns the descriptions; `description_counts` says how many were kept
        as written, trimmed or unusable.
        """
        if not self.labels:
            raise ValueError(f"components.{self.name}.labels is empty: there is nothing to describe")
        self._ensure_loaded()
        described = dict(self.label_descriptions or {})
        todo = [label for label in self.labels if not described.get(label)]
        empty = Chunk(text="", words=[], offsets=[])
        requests = [
            Request(definition_prompt(label, self.labels), empty, answer_budget=DEFINITION_BUDGET) for label in todo
        ]
        unusable = []
        self.description_counts = Counter()
        for batch in minibatch(range(len(requests)), size=self.batch_size):
            for k, answer in zip(batch, self._answers([requests[k] for k in batch])):
                if isinstance(answer, Exception):
                    raise answer
                definition, repair = read_definition(answer, todo[k])
                self.description_counts[repair or "kept"] += 1
                if definition is None:
                    unusable.append(todo[k])
                else:
                    described[todo[k]] = definition
        if unusable:
            warnings.warn(
                f"components.{self.name}: the model wrote no usable definition of {unusable}; "
                "give them in label_descriptions",
                stacklevel=2,
            )
        self.label_descriptions = self._check_descriptions(described)
        self._sync_config()
        return dict(self.label_descriptions or {})

    def _ensure_loaded(self) -> None:
        if self.model.is_loaded:
            return
        try:
            self.model.ensure_loaded()  # under the backend's lock: loaded once
        except ModelLoadError as err:
            raise ModelLoadError(f"components.{self.name}.model: {err}") from err

    # -- processing -------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        _, failures = self._process([doc])
        for failed, err in failures:
            self.get_error_handler()(self.name, self, failed, err)
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Process docs in buffers of `batch_size` docs (spaCy's batch size).

        Within a buffer, prompts are sorted by length and sent to the backend
        in batches of the component's own `batch_size`. A backend call that
        fails hands its docs to the error handler (`nlp.set_error_handler`; by
        default the error is raised); those docs are not yielded, as with
        spaCy's own components, and the other batches go on.
        """
        buffer = batch_size or self.batch_size * BUFFER_FACTOR
        progress = tqdm(desc=self.name, unit="prompt", disable=not self.show_progress)
        error_handler = self.get_error_handler()
        try:
            for docs in minibatch(stream, size=buffer):
                done, failures = self._process(list(docs), progress)
                for failed, err in failures:
                    error_handler(self.name, self, failed, err)
                yield from done
        finally:
            progress.close()

    def _process(
        self, docs: List[Doc], progress: Optional[tqdm] = None
    ) -> Tuple[List[Doc], List[Tuple[List[Doc], Exception]]]:
        """Annotate docs; returns the docs done, in order, and the docs of each
        failed backend call with its error."""
        if not self.labels:
            raise ValueError(
                f"components.{self.name}.labels is empty: give the entity types to find, e.g. "
                'nlp.add_pipe("recot_ner", config={"labels": ["person", "location"]}), '
                "call add_label, or initialize the pipeline with examples"
            )
        self._ensure_loaded()
        try:
            limits = self._limits()
        except Exception as err:  # noqa: BLE001 - e.g. a server's /tokenize down: no doc can be asked
            return [], [(docs, err)]
        requests: List[Tuple[int, Request]] = []
        failed: Set[int] = set()
        failures: List[Tuple[List[Doc], Exception]] = []
        for i, doc in enumerate(docs):
            try:  # a server backend counts tokens over the network: that may fail for one doc
                requests.extend((i, request) for request in self.requests_for(doc, limits))
            except Exception as err:  # noqa: BLE001 - handed to spaCy's error handler
                failed.add(i)
                failures.append(([doc], err))
        # Characters are a close enough proxy for tokens to group similar
        # lengths, and cost no second tokenization of every prompt.
        order = sorted(range(len(requests)), key=lambda k: len(requests[k][1].prompt))
        outputs: List[str] = [""] * len(requests)
        for batch in minibatch(order, size=self.batch_size):
            batch = [k for k in batch if requests[k][0] not in failed]
            if not batch:
                continue
            try:
                answers = self._answers([requests[k][1] for k in batch])
            except Exception as err:  # noqa: BLE001 - handed to spaCy's error handler
                new = sorted({requests[k][0] for k in batch} - failed)
                failed.update(new)
                failures.append(([docs[i] for i in new], err))
                continue
            finally:
                if progress is not None:
                    progress.update(len(batch))
            for k, answer in zip(batch, answers):
                if isinstance(answer, Exception):  # this request failed alone (a server backend)
                    i = requests[k][0]
                    if i not in failed:
                        failed.add(i)
                        failures.append(([docs[i]], answer))
                else:
                    outputs[k] = answer
        per_doc: Dict[int, List[Tuple[Request, str]]] = {}
        for (i, request), output in zip(requests, outputs):
            per_doc.setdefault(i, []).append((request, output))
        for i, pairs in per_doc.items():
            if i not in failed:
                self.set_annotations(docs[i], pairs)
        return [doc for i, doc in enumerate(docs) if i not in failed], failures

    def _answers(self, batch: List[Request]) -> List[Any]:
        """The backend's answers, read from the response cache when it has them."""
        if self.cache is None:
            return self.model(batch)
        identity = self.model.identity()
        keys = [self.cache.key(identity, r) for r in batch]
        answers: List[Any] = [self.cache.get(key) for key in keys]
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if todo:
            for i, answer in zip(todo, self.model([batch[i] for i in todo])):
                answers[i] = answer
                if not isinstance(answer, Exception) and getattr(answer, "cacheable", True):
                    try:
                        self.cache.put(keys[i], answer)
                    except OSError as err:  # a full disk must not cost the answers already made
                        warnings.warn(f"components.{self.name}.cache_dir: answer not stored ({err})", stacklevel=2)
        return answers

    def requests_for(self, doc: Doc, limits: Optional[Limits] = None) -> List[Request]:
        """What the backend is asked about a doc: one request per chunk (none for
        an empty or whitespace-only doc). With `set_annotations(doc, pairs)` this
        lets a caller run the backend itself (to cache answers, or to read the
        same answers several ways)."""
        if not doc.text.strip():
            return []
        self._ensure_loaded()
        limits = limits if limits is not None else self._limits()
        groups = [(group, self.task.schema(group)) for group in self.task.label_groups(self.labels)]
        requests = []
        for chunk in fitting_chunks(doc, limits, self.model.count_tokens, self.window_overlap):
            budget = limits.answer_budget(chunk, self.model.count_tokens)
            for group, schema in groups:
                prompt = self.task.render(chunk, group, self.label_descriptions)
                requests.append(Request(prompt, chunk, schema, budget, self.task.constraint(chunk, schema)))
        return requests

    def _limits(self) -> Limits:
        """What fits the model, for every doc: measured once per buffer."""
        room_in = room_out = None
        per_word = fixed = 0
        if self.model.max_input_tokens is not None:
            empty = Chunk(text="", words=[], offsets=[])
            prompt = self.task.render(empty, self.labels, self.label_descriptions)
            room_in = max(self.model.max_input_tokens - self.model.prompt_tokens(prompt), 1)
        if self.model.max_new_tokens is not None:
            fixed, per_word = self.task.answer_budget(self.labels, self.model.count_tokens)
            room_out = max(self.model.max_new_tokens - fixed, 1)
        return Limits(room_in, room_out, per_word, fixed)

    # -- annotations --------------------------------------------------------

    def read(self, request: Request, answer: str) -> Reading:
        """Read one answer with the task: spans, their scores, the rationale, counts."""
        return self.task.read(
            request.chunk,
            answer,
            self.labels,
            roundtrip=self.model.roundtrip,
            all_occurrences=self.all_occurrences,
        )

    def set_annotations(self, doc: Doc, pairs: Sequence[Tuple[Request, str]]) -> None:
        """Read the answers for a doc's chunks and set its entities."""
        found = doc_entities(
            doc,
            [self.read(request, output) for request, output in pairs],
            threshold=self.threshold,
            alignment_mode=self.alignment_mode,
            overlaps=self.overlaps,
        )
        doc.set_ents(found.kept)
        if self.spans_key is not None:
            # As spaCy's spancat does: each span's score in the group's attrs (None: no score).
            doc.spans[self.spans_key] = found.spans
            doc.spans[self.spans_key].attrs["scores"] = [found.rounded_score(span) for span in found.spans]
        record = found.record()
        if self.store_io:
            record["io"] = [{"prompt": r.prompt, "output": o} for r, o in pairs]
        doc.user_data.setdefault(USER_DATA_KEY, {})[self.name] = record

    # -- serialization ----------------------------------------------------

    def _cfg(self) -> Dict[str, Any]:
        return {"labels": self.labels, "label_descriptions": self.label_descriptions}

    def _set_cfg(self, cfg: Dict[str, Any], saved_config_labels: Optional[List[str]] = None) -> None:
        """Take the saved labels where the config gives none, or gives exactly
        what the saved config.cfg says (no override at load): the saved `cfg`
        holds what the pipe used, also when the config was not kept in sync
        (a sourced, pickled or copied pipeline). An override at `spacy.load`
        differs from the saved config.cfg and wins."""
        saved = cfg.get("labels")
        if saved and (not self.labels or (saved_config_labels is not None and self.labels == saved_config_labels)):
            self.labels = saved
        if not self.label_descriptions and cfg.get("label_descriptions"):
            self.label_descriptions = self._check_descriptions(cfg["label_descriptions"])
            self._sync_config()

    def _saved_config_labels(self, path: Path) -> Optional[List[str]]:
        """The labels the pipeline's config.cfg (beside the component's folder) gives this component."""
        from spacy.util import load_config

        config_path = Path(path).parent / "config.cfg"
        if not config_path.exists():
            return None
        try:
            labels = load_config(config_path, interpolate=False)["components"][Path(path).name]["labels"]
        except (KeyError, TypeError, ValueError, OSError):
            return None
        return list(labels) if isinstance(labels, (list, tuple)) else None

    def to_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write the labels and the model (weights and tokenizer) into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self._cfg())
        if "model" not in exclude:
            self.model.to_disk(path / "model")

    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "RecotNER":
        """Load the model from `path`, with no network."""
        path = Path(path)
        if (path / "cfg").exists():
            self._set_cfg(srsly.read_json(path / "cfg"), self._saved_config_labels(path))
        if "model" not in exclude:
            self.model.from_disk(path / "model")
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        data: Dict[str, Any] = {"cfg": self._cfg()}
        if "model" not in exclude:
            data["model"] = self.model.to_bytes()
        return srsly.msgpack_dumps(data)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "RecotNER":
        data = srsly.msgpack_loads(bytes_data)
        self._set_cfg(data["cfg"])
        if "model" not in exclude and "model" in data:
            self.model.from_bytes(data["model"])
        return self

"""The `recot_ner` pipeline component.

It renders each doc (or each chunk of a long doc) into a prompt, asks the
model backend for text, parses that text into labelled spans and sets
`doc.ents`. What was asked, answered, repaired and dropped is kept per doc in
`doc.user_data["recot"][<component name>]` as plain JSON values.
"""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import filter_spans, minibatch
from tqdm import tqdm

from .backends import Backend, ModelLoadError
from .bio import align_tags, normalize_tags, parse_bio, tags_to_spans
from .chunks import Chunk, Request, doc_words, sentence_starts, split_chunk
from .entities import find_spans, parse_entity_list, rationale_sentences, reason_for

USER_DATA_KEY = "recot"
ALIGNMENT_MODES = ("strict", "contract", "expand")

# A real instruction model that ships in pip packages: works offline after
# the README's set-up command (see README, "The default model").
DEFAULT_MODEL = {"@misc": "spacy_recot.PackagedCausal.v1"}
# Chosen by measurement (README, "The default model"). A name of its own, not
# ReasoningNERPrompt.v1 with other settings: spaCy merges a user's block into a
# default of the same name, and `{"@misc": "spacy_recot.ReasoningNERPrompt.v1"}`
# must mean ReasoningNER's verbatim prompt.
DEFAULT_PROMPT = {"@misc": "spacy_recot.ZeroShotJSONPrompt.v1"}


@Language.factory(
    "recot_ner",
    assigns=["doc.ents"],
    default_config={
        "model": DEFAULT_MODEL,
        "prompt": DEFAULT_PROMPT,
        "label_descriptions": None,
        "batch_size": 8,
        "alignment_mode": "contract",
        "all_occurrences": False,
        "spans_key": None,
        "store_io": False,
        "show_progress": False,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_recot_ner(
    nlp: Language,
    name: str,
    labels: List[str],
    model: Backend,
    prompt: Any,
    label_descriptions: Optional[Dict[str, str]],
    batch_size: int,
    alignment_mode: str,
    all_occurrences: bool,
    spans_key: Optional[str],
    store_io: bool,
    show_progress: bool,
    scorer: Optional[Callable],
) -> "RecotNER":
    """Zero-shot NER with a generative model.

    labels (List[str]): The entity types to find, in the spelling the model is
        shown (natural language works best: "programming language").
    model (Backend): The model backend: `spacy_recot.PackagedCausal.v1` (the
        default, offline), `spacy_recot.HFCausal.v1` or `spacy_recot.HFSeq2Seq.v1`.
    prompt: The prompt: `spacy_recot.ReasoningNERPrompt.v1` for causal models,
        `spacy_recot.ReCoTPrompt.v1` or `spacy_recot.GNERPrompt.v1` for T5 models.
    label_descriptions (Optional[Dict[str, str]]): A short definition per label,
        added to the prompt.
    batch_size (int): Prompts per `generate` call.
    alignment_mode (str): How `doc.char_span` snaps a match that is off the
        token boundaries: "strict", "contract" or "expand".
    all_occurrences (bool): Entity-list output: mark every occurrence of an
        entity string, not only the first one after the previous match.
    spans_key (Optional[str]): Also keep every span, overlapping ones
        included, in `doc.spans[spans_key]`.
    store_io (bool): Keep the prompts and raw outputs in `doc.user_data`.
    show_progress (bool): Show a progress bar over the prompts.
    scorer (Optional[Callable]): The scoring method (spaCy's NER scorer).
    """
    return RecotNER(
        nlp.vocab,
        model,
        prompt,
        name=name,
        labels=labels,
        label_descriptions=label_descriptions,
        batch_size=batch_size,
        alignment_mode=alignment_mode,
        all_occurrences=all_occurrences,
        spans_key=spans_key,
        store_io=store_io,
        show_progress=show_progress,
        scorer=scorer,
    )


def _check_labels(labels: Sequence[str], key: str) -> List[str]:
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ValueError(f"{key} must be a list of label names, not {labels!r}")
    cleaned = [label.strip() if isinstance(label, str) else label for label in labels]
    bad = [label for label in cleaned if not isinstance(label, str) or not label]
    if bad:
        raise ValueError(f"{key} holds empty or non-string labels: {bad!r}")
    if not cleaned:
        raise ValueError(
            f"{key} is empty: give the entity types to find, e.g. "
            'config={"labels": ["person", "location"]}'
        )
    if len(set(cleaned)) != len(cleaned):
        dupes = sorted({label for label in cleaned if cleaned.count(label) > 1})
        raise ValueError(f"{key} lists {dupes} more than once")
    return list(cleaned)


class RecotNER(Pipe):
    """Sets `doc.ents` from what a generative model writes about each doc."""

    def __init__(
        self,
        vocab: Any,
        model: Backend,
        prompt: Any,
        *,
        name: str = "recot_ner",
        labels: Sequence[str],
        label_descriptions: Optional[Dict[str, str]] = None,
        batch_size: int = 8,
        alignment_mode: str = "contract",
        all_occurrences: bool = False,
        spans_key: Optional[str] = None,
        store_io: bool = False,
        show_progress: bool = False,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.prompt = prompt
        self.name = name
        self.labels = labels
        self.label_descriptions = self._check_descriptions(label_descriptions)
        if batch_size < 1:
            raise ValueError(f"components.{name}.batch_size must be at least 1, not {batch_size}")
        if alignment_mode not in ALIGNMENT_MODES:
            raise ValueError(
                f"components.{name}.alignment_mode must be one of {ALIGNMENT_MODES}, "
                f"not {alignment_mode!r}"
            )
        fixed = getattr(model, "output_format", None)
        if fixed is not None and fixed != prompt.output_format:
            raise ValueError(
                f"components.{name}: the model writes '{fixed}' output but the prompt "
                f"asks for '{prompt.output_format}'; pick a prompt that matches"
            )
        self.batch_size = batch_size
        self.alignment_mode = alignment_mode
        self.all_occurrences = all_occurrences
        self.spans_key = spans_key
        self.store_io = store_io
        self.show_progress = show_progress
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {}

    @property
    def labels(self) -> List[str]:
        """The entity types the model is asked for."""
        return self._labels

    @labels.setter
    def labels(self, value: Sequence[str]) -> None:
        self._labels = _check_labels(value, f"components.{self.name}.labels")

    @property
    def label_data(self) -> List[str]:
        return list(self._labels)

    def _check_descriptions(self, descriptions: Optional[Dict[str, str]]) -> Optional[Dict[str, str]]:
        if not descriptions:
            return None
        unknown = sorted(set(descriptions) - set(self.labels))
        if unknown:
            raise ValueError(
                f"components.{self.name}.label_descriptions describes {unknown}, "
                f"which are not in labels {self.labels}"
            )
        return dict(descriptions)

    # -- lifecycle --------------------------------------------------------

    def initialize(
        self,
        get_examples: Optional[Callable[[], Iterable[Example]]] = None,
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Load the model weights, and optionally set the labels.

        labels (Optional[Sequence[str]]): Replace the configured labels. When not
            given and the configured labels are empty, they are read from the
            examples' reference entities.
        """
        if labels is not None:
            self.labels = labels
        elif get_examples is not None and not self.labels:
            seen = sorted({e.label_ for eg in get_examples() for e in eg.reference.ents})
            self.labels = seen
        self.label_descriptions = self._check_descriptions(self.label_descriptions)
        self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if self.model.is_loaded:
            return
        try:
            self.model.load()
        except ModelLoadError as err:
            raise ModelLoadError(f"components.{self.name}.model: {err}") from err

    # -- processing -------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc], batch_size=1)))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        """Process docs in buffers; prompts are sorted by length within a buffer
        and sent in batches of `batch_size`, one `generate` call per batch."""
        size = batch_size or self.batch_size
        progress = tqdm(desc=self.name, unit="prompt", disable=not self.show_progress)
        try:
            for docs in minibatch(stream, size=size * 8):
                yield from self._process(list(docs), size, progress)
        finally:
            progress.close()

    def _process(self, docs: List[Doc], size: int, progress: tqdm) -> List[Doc]:
        self._ensure_loaded()
        limits = self._limits()
        requests: List[Tuple[int, Request]] = []
        schema = self.prompt.schema(self.labels)
        for i, doc in enumerate(docs):
            if not doc.text.strip():
                continue  # empty and whitespace-only docs pass through untouched
            for chunk in self._chunks(doc, limits):
                prompt = self.prompt.render(chunk, self.labels, self.label_descriptions)
                requests.append((i, Request(prompt, chunk, schema)))
        # Characters are a close enough proxy for tokens to group similar
        # lengths, and cost no second tokenization of every prompt.
        order = sorted(range(len(requests)), key=lambda k: len(requests[k][1].prompt))
        outputs: List[str] = [""] * len(requests)
        for batch in minibatch(order, size=size):
            answers = self.model([requests[k][1] for k in batch])
            for k, answer in zip(batch, answers):
                outputs[k] = answer
            progress.update(len(batch))
        per_doc: Dict[int, List[Tuple[Request, str]]] = {}
        for (i, request), output in zip(requests, outputs):
            per_doc.setdefault(i, []).append((request, output))
        for i, pairs in per_doc.items():
            self.set_annotations(docs[i], pairs)
        return docs

    def _limits(self) -> Tuple[Optional[int], Optional[int], int]:
        """Room for the words in the prompt and in the answer, and the tokens of
        a tag: the same for every doc of a batch, so measured once per batch."""
        room_in = room_out = None
        tag_cost = 0
        if self.model.max_input_tokens is not None:
            empty = Chunk(text="", words=[], offsets=[])
            prompt = self.prompt.render(empty, self.labels, self.label_descriptions)
            room_in = max(self.model.max_input_tokens - self.model.prompt_tokens(prompt), 1)
        if self.model.max_new_tokens is not None and self.prompt.output_format == "bio":
            room_out = max(self.model.max_new_tokens - 2, 1)
            # BIO output repeats every word with its tag: "(O)" is about 3 tokens.
            tag_cost = self.model.count_tokens(["(O)"])[0]
        elif self.model.max_new_tokens is not None:
            # Entity lists: the JSON skeleton with every label, then, at worst,
            # every word inside some entity string (plus a quote or comma each).
            skeleton = json.dumps({"entities": {label: [] for label in self.prompt.schema(self.labels)}})
            room_out = max(self.model.max_new_tokens - self.model.count_tokens([skeleton])[0] - 2, 1)
            tag_cost = 1
        return room_in, room_out, tag_cost

    def _chunks(self, doc: Doc, limits: Tuple[Optional[int], Optional[int], int]) -> List[Chunk]:
        """The doc's words, split into chunks that fit the model's limits."""
        chunk = doc_words(doc)
        room_in, room_out, tag_cost = limits
        if not chunk.words or (room_in is None and room_out is None):
            return [chunk] if chunk.words else []
        word_costs = [max(c, 1) for c in self.model.count_tokens(chunk.words)]
        # A word's cost is the share of the tightest limit it uses up; a chunk
        # fits when its costs sum to at most 1.
        costs = [
            max(w / room_in if room_in else 0.0, (w + tag_cost) / room_out if room_out else 0.0)
            for w in word_costs
        ]
        if sum(costs) <= 1.0:
            return [chunk]
        return split_chunk(chunk, costs, 1.0, sentence_starts(doc, chunk))

    # -- parsing ----------------------------------------------------------

    def set_annotations(self, doc: Doc, pairs: Sequence[Tuple[Request, str]]) -> None:
        """Parse the outputs for a doc's chunks and set its entities."""
        counts: Counter = Counter()
        char_spans: List[Tuple[int, int, str]] = []
        rationales: List[str] = []
        for request, output in pairs:
            if self.prompt.output_format == "bio":
                char_spans.extend(self._parse_bio(request.chunk, output, counts))
            else:
                rationale, spans = self._parse_entities(doc, request.chunk, output, counts)
                char_spans.extend(spans)
                if rationale:
                    rationales.append(rationale)
        spans: List[Span] = []
        for start, end, label in char_spans:
            span = doc.char_span(start, end, label=label, alignment_mode=self.alignment_mode)
            if span is None or len(span) == 0:
                counts["dropped_unaligned"] += 1
                continue
            spans.append(span)
        kept = filter_spans(spans)
        if len(kept) < len(spans):
            counts["dropped_overlapping"] += len(spans) - len(kept)
        doc.set_ents(kept)
        if self.spans_key is not None:
            doc.spans[self.spans_key] = spans
        sentences = rationale_sentences("\n".join(rationales))
        entities = []
        for s in kept:
            entity = {"text": s.text, "label": s.label_, "start_char": s.start_char, "end_char": s.end_char}
            reason = reason_for(sentences, s.text)
            if reason is not None:
                entity["reason"] = reason
            entities.append(entity)
        record: Dict[str, Any] = {
            "entities": entities,
            "counts": dict(sorted(counts.items())),
        }
        if rationales:
            record["rationale"] = "\n\n".join(rationales)
        if self.store_io:
            record["io"] = [{"prompt": r.prompt, "output": o} for r, o in pairs]
        doc.user_data.setdefault(USER_DATA_KEY, {})[self.name] = record

    def _parse_bio(self, chunk: Chunk, output: str, counts: Counter) -> List[Tuple[int, int, str]]:
        words, raw_tags = parse_bio(output, counts)
        tags = align_tags(self.model.roundtrip(chunk.words), words, raw_tags, counts)
        tags = normalize_tags(tags, self.labels, counts)
        return [
            (chunk.offsets[s][0], chunk.offsets[e - 1][1], label) for s, e, label in tags_to_spans(tags)
        ]

    def _parse_entities(
        self, doc: Doc, chunk: Chunk, output: str, counts: Counter
    ) -> Tuple[str, List[Tuple[int, int, str]]]:
        rationale, items = parse_entity_list(output, self.labels, counts)
        starts = {s for s, _ in chunk.offsets}
        ends = {e for _, e in chunk.offsets}
        spans = find_spans(
            doc.text,
            items,
            lambda s, e: s in starts and e in ends,
            region=(chunk.start_char, chunk.end_char),
            all_occurrences=self.all_occurrences,
            counts=counts,
        )
        return rationale, spans

    # -- serialization ----------------------------------------------------

    def _cfg(self) -> Dict[str, Any]:
        return {"labels": self.labels, "label_descriptions": self.label_descriptions}

    def _set_cfg(self, cfg: Dict[str, Any]) -> None:
        self.labels = cfg["labels"]
        self.label_descriptions = cfg.get("label_descriptions")

    def to_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> None:
        """Write the labels and the model (weights and tokenizer) into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path / "cfg", self._cfg())
        if "model" not in exclude:
            self.model.to_disk(path / "model")

    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "RecotNER":
        """Load the labels and the model from `path`, with no network."""
        path = Path(path)
        self._set_cfg(srsly.read_json(path / "cfg"))
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

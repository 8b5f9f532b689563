"""The oracle backend: answers every request with the gold annotation.

It writes what a perfect model would write, in the model's output format, so
that running the component with it measures the whole parse-and-align path
on real data: with no noise, `spacy evaluate` must print an entity F of
100.00. Noise modes make the answers look like real model output, to measure
what each kind of slip costs.
"""

import random
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import srsly
from spacy.tokens import Doc
from spacy.util import registry
from spacy.vocab import Vocab

from ..backends import Backend
from ..chunks import Chunk, Request
from ..conll import read_conll, read_docbin, sentences_to_docs
from ..tasks import WordSpan, entity_json, spans_to_tags

NOISE_MODES = ("lowercase", "sentencepiece", "drop_word", "insert_word")
OUTPUT_FORMATS = ("bio", "entities")

# Characters that T5's sentencepiece vocabulary cannot write: a T5 model's
# decoded output loses them (they come out as <unk>, removed on decoding).
_T5_LOST_CHARS = set("{}<\\~^`")
_INSERTED_WORDS = ("the", "of", "and", "a", "in")


def load_gold_docs(path: Path) -> List[Doc]:
    """Gold docs from a `.spacy` file, or from a CoNLL/GNER file."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Oracle gold file '{path}' (model.gold) does not exist")
    if path.suffix == ".spacy":
        return read_docbin(path, Vocab())
    return sentences_to_docs(Vocab(), list(read_conll(path)))


def _sentencepiece_word(word: str) -> str:
    """A word as a T5 model writes it: NFKC-normalized, unwritable characters lost."""
    word = unicodedata.normalize("NFKC", word)
    return "".join(ch for ch in word if ch not in _T5_LOST_CHARS and ord(ch) < 0x2000) or word[:0]


class OracleBackend(Backend):
    """Answers with the gold entities of the doc whose text matches the request."""

    def __init__(
        self,
        gold: Path,
        output_format: str = "bio",
        noise: Optional[Dict[str, float]] = None,
        seed: int = 0,
    ):
        if output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"Oracle output_format (model.output_format) must be one of {OUTPUT_FORMATS}, not {output_format!r}"
            )
        unknown = sorted(set(noise or {}) - set(NOISE_MODES))
        if unknown:
            raise ValueError(f"Unknown oracle noise modes {unknown} (model.noise); known: {list(NOISE_MODES)}")
        self.gold_path = Path(gold)
        self.output_format = output_format
        self.output_formats = (output_format,)
        self.default_prompt = (
            "spacy_recot.ReCoTPrompt.v1" if output_format == "bio" else "spacy_recot.ZeroShotJSONPrompt.v1"
        )
        self.noise = dict(noise or {})
        self.seed = seed
        # text -> the annotations of each doc with that text, in data order
        self._gold: Optional[Dict[str, List[List[Tuple[int, int, str]]]]] = None
        self._seen: Counter = Counter()

    @property
    def is_loaded(self) -> bool:
        return self._gold is not None

    def load(self) -> None:
        self._set_gold(load_gold_docs(self.gold_path))

    def _set_gold(self, docs: Sequence[Doc]) -> None:
        gold: Dict[str, List[List[Tuple[int, int, str]]]] = {}
        for doc in docs:
            gold.setdefault(doc.text, []).append([(e.start_char, e.end_char, e.label_) for e in doc.ents])
        self._gold = gold
        self._seen = Counter()

    def generate(self, requests: Sequence[Request]) -> List[str]:
        return [self._answer(r.chunk) for r in requests]

    def _answer(self, chunk: Chunk) -> str:
        assert self._gold is not None
        versions = self._gold.get(chunk.text)
        if versions is None:
            raise ValueError(
                f"The oracle has no gold annotation for the text {chunk.text[:80]!r}: "
                f"is {self.gold_path} (model.gold) the data being processed?"
            )
        # Test sets hold some sentences twice, annotated differently: the k-th
        # request for a text (and chunk) gets the k-th annotation of that text.
        key = (chunk.text, chunk.start_char)
        ents = versions[self._seen[key] % len(versions)]
        self._seen[key] += 1
        spans: List[WordSpan] = []
        for start, end, label in ents:
            inside = [i for i, (s, e) in enumerate(chunk.offsets) if s < end and start < e]
            if inside:
                spans.append((inside[0], inside[-1] + 1, label))
        rng = random.Random(f"{self.seed}:{chunk.text}:{chunk.start_char}")
        active = [m for m in NOISE_MODES if m in self.noise and rng.random() < self.noise[m]]
        if self.output_format == "bio":
            return self._bio(chunk, spans, active, rng)
        return self._entities(chunk, spans, active, rng)

    def _bio(self, chunk: Chunk, spans: List[WordSpan], active: List[str], rng: random.Random) -> str:
        words = list(chunk.words)
        tags = spans_to_tags(len(words), spans)
        if "lowercase" in active:
            words = [w.lower() for w in words]
        if "sentencepiece" in active:
            words = [_sentencepiece_word(w) for w in words]
        if "drop_word" in active and len(words) > 1:
            i = rng.randrange(len(words))
            del words[i], tags[i]
        if "insert_word" in active:
            i = rng.randrange(len(words) + 1)
            words.insert(i, rng.choice(_INSERTED_WORDS))
            tags.insert(i, "O")
        parts = [f"{w}({t})" for w, t in zip(words, tags)]
        if "sentencepiece" in active:
            # T5 drops the space before punctuation: "forces(O).(O)".
            out = parts[0] if parts else ""
            for w, part in zip(words[1:], parts[1:]):
                out += part if w and not w[0].isalnum() else " " + part
            return out
        return " ".join(parts)

    def _entities(self, chunk: Chunk, spans: List[WordSpan], active: List[str], rng: random.Random) -> str:
        texts = [chunk.slice_text(s, e) for s, e, _ in spans]
        if "lowercase" in active:
            texts = [t.lower() for t in texts]
        if "sentencepiece" in active:
            texts = [" ".join(_sentencepiece_word(w) for w in t.split()) for t in texts]
        if "drop_word" in active:
            multi = [i for i, t in enumerate(texts) if len(t.split()) > 1]
            if multi:
                i = rng.choice(multi)
                words = texts[i].split()
                del words[rng.randrange(len(words))]
                texts[i] = " ".join(words)
        if "insert_word" in active and texts:
            i = rng.randrange(len(texts))
            words = texts[i].split()
            words.insert(rng.randrange(len(words) + 1), rng.choice(_INSERTED_WORDS))
            texts[i] = " ".join(words)
        return entity_json([(text, label) for text, (_, _, label) in zip(texts, spans)])

    def to_disk(self, path: Path) -> None:
        # Ship the gold annotation with the pipeline, so spacy.load works anywhere.
        self.ensure_loaded()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        assert self._gold is not None
        srsly.write_msgpack(path / "gold.msg", {"gold": [[t, v] for t, v in self._gold.items()]})

    def from_disk(self, path: Path) -> None:
        data = srsly.read_msgpack(Path(path) / "gold.msg")
        self._gold = {text: [[tuple(e) for e in ents] for ents in versions] for text, versions in data["gold"]}
        self._seen = Counter()


@registry.misc("spacy_recot.Oracle.v1")
def make_oracle(
    gold: Path,
    output_format: str = "bio",
    noise: Dict[str, float] = {},
    seed: int = 0,
) -> OracleBackend:
    """A backend that answers with the gold annotation, to test the whole path.

    gold (Path): A `.spacy` file or a CoNLL/GNER file with the annotation.
    output_format (str): "bio" (GNER `word(tag)` output) or "entities" (JSON).
    noise (Dict[str, float]): Per-request probability of each noise mode:
        "lowercase", "sentencepiece" (T5-style detokenization), "drop_word",
        "insert_word".
    seed (int): Seed of the noise.
    """
    return OracleBackend(gold, output_format=output_format, noise=noise, seed=seed)

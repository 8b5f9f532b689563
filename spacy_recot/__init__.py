"""spacy-recot: zero-shot named entity recognition with generative models for spaCy."""

from . import backends, tasks  # noqa: F401  (registers the spacy_recot.* functions)
from .component import RecotNER
from .factory import make_recot_ner

__version__ = "0.1.0"

__all__ = ["RecotNER", "make_recot_ner", "__version__"]

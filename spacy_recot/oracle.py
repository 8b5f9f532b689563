"""Moved to `spacy_recot.testing.oracle`; this name stays so that older imports work."""

from .testing.oracle import NOISE_MODES, OUTPUT_FORMATS, OracleBackend, load_gold_docs, make_oracle  # noqa: F401

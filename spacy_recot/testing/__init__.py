"""Helpers for tests, smoke runs and the parse-and-align check, not for production use.

- `tiny`: tiny T5 and Qwen3 models built from a config, with tokenizers trained on
  the spot (no model hub needed): the base models of the tests, the benchmarks and
  the CPU smoke runs of the training workflows (`tiny-t5`, `tiny-qwen3`).
- `oracle`: the oracle backend (`spacy_recot.Oracle.v1`), which answers with the
  gold annotation in the model's output format, so that the whole parse-and-align
  path can be checked on real data (entity F 100.00 without noise).

Importing this package imports neither: `tiny` needs transformers' model classes.
"""

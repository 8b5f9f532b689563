#!/usr/bin/env bash
# Install the project from its own files, then run the main job: the spaCy
# project workflows `all` (train, evaluate, package on the tiny CPU configuration)
# and `checks` (the oracle check and the noise benchmark); see project.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -r requirements-nodeps.txt
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python -m spacy project run all . "$@"
python -m spacy project run checks .

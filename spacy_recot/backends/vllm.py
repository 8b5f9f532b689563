"""A local vLLM server for the server backend's tests and benchmarks: started
from its own virtual environment (scripts/vllm_venv.sh: vLLM pins its own torch
and transformers), on 127.0.0.1, stopped with its whole process group."""

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

from ..net import free_port

VLLM_PYTHON_ENV = "SPACY_RECOT_VLLM_PYTHON"


def vllm_python() -> Optional[str]:
    """The Python of the virtual environment that holds vLLM's CPU build:
    $SPACY_RECOT_VLLM_PYTHON, else the one `scripts/vllm_venv.sh` makes in the
    cache folder; None when neither exists."""
    from .packaged import cache_dir

    candidates = [os.environ.get(VLLM_PYTHON_ENV), str(cache_dir() / "vllm-venv" / "bin" / "python")]
    return next((c for c in candidates if c and os.path.exists(c)), None)


@contextmanager
def running_server(
    command: List[str],
    health_url: str,
    *,
    env: Optional[Dict[str, str]] = None,
    timeout: float = 300.0,
    log: Optional[str] = None,
) -> Iterator[subprocess.Popen]:
    """Start a server process, wait until `health_url` answers 200, yield the
    process, and stop it (SIGTERM, then SIGKILL) when done."""
    import httpx

    out = open(log, "wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with code {process.returncode} before it was healthy: {' '.join(command)}"
                    + (f" (log: {log})" if log else "")
                )
            try:
                if httpx.get(health_url, timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{health_url} was not healthy after {timeout:.0f} s")
            time.sleep(0.5)
        yield process
    finally:
        stop_process(process)
        if log:
            out.close()


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (vLLM runs its engine in a child), then
    SIGKILL to whatever of the group is left, after at most 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:  # whatever of the group outlived its leader (vLLM's engine process)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def local_vllm(
    model_dir: str,
    *,
    served_name: str = "model",
    max_model_len: int = 2048,
    python: Optional[str] = None,
    log: Optional[str] = None,
) -> Iterator[str]:
    """Serve `model_dir` with vLLM's CPU build on 127.0.0.1 (one thread, bfloat16);
    yields the base URL ("http://127.0.0.1:PORT/v1")."""
    python = python or vllm_python()
    if python is None:
        raise RuntimeError(f"no vLLM environment: run scripts/vllm_venv.sh, or set {VLLM_PYTHON_ENV}")
    port = free_port()
    command = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--dtype",
        "bfloat16",
        "--enforce-eager",
    ]
    env = {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with running_server(command, f"http://127.0.0.1:{port}/health", env=env, log=log):
        yield f"http://127.0.0.1:{port}/v1"

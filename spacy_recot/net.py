"""A free TCP port on 127.0.0.1, for the servers the package starts (vLLM for
tests and benchmarks, DeepSpeed's one-process group)."""

import socket


def free_port() -> int:
    """A port no one listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

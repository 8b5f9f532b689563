"""Every bad input of the README's table fails early, with a message naming the key, file or line."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bad_inputs import cases, run_case  # noqa: E402

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_message(case, tmp_path):
    message = run_case(case, tmp_path)
    assert message, f"{case[0]}: no error"
    assert case[2] in message, message
    assert "Traceback" not in message

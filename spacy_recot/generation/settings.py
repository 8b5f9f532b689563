"""The decoding engine's tuning knobs, in one settings object.

They change how fast answers come, never which answers: every shortcut they
tune is tested to give the answers of plain greedy decoding (tests/generation).
"""

from dataclasses import dataclass


@dataclass
class DecodingSettings:
    """How the greedy loop spends its compute (measured in docs/speed.md).

    max_draft (int): The longest guess fed for one answer in one step.
    pass_cost (int): What a prompt pass of its own costs, in prompt tokens
        (measured on a CPU: about 90 ms a pass, 8 ms a token, for the 0.5B
        model): padding beyond it per prompt lays the prompts end to end.
    pack_tokens (int): The most prompt tokens laid end to end in one pass:
        enough rows for the CPU's matrix kernels to run at full speed, few
        enough that the attention over them (whose masked-out part is computed
        too) stays small beside the linear layers.
    sparse_head_share (float): Apply the output layer to the grammar's allowed
        tokens only when they are at most this share of the vocabulary.
    min_shared_prefix (int): Shorter shared beginnings of a batch's prompts are
        not worth a cache of their own.
    """

    max_draft: int = 8
    pass_cost: int = 12
    pack_tokens: int = 512
    sparse_head_share: float = 0.25
    min_shared_prefix: int = 16

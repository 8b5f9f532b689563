"""One builder of the chat messages a prompt is sent as: the in-process causal
backends, the server backend and the training data use it, so a model is
trained on exactly the turns it is later asked in."""

from typing import Dict, List, Optional


def chat_messages(prompt: str, system_prompt: Optional[str] = None) -> List[Dict[str, str]]:
    """The prompt as the user turn, after a system turn when one is given (None
    keeps the chat template's default system turn)."""
    messages = [{"role": "user", "content": prompt}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages

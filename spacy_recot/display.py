"""An HTML page of processed docs: displaCy's entity view, with each entity's
score on its label, and a table of the entities with their scores and reasons."""

import html
from typing import Any, Dict, List, Sequence

from spacy import displacy
from spacy.tokens import Doc

from .component import USER_DATA_KEY

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spacy-recot</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
.doc {{ margin-bottom: 2.5em; }}
table {{ border-collapse: collapse; margin-top: 0.8em; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }}
td.score {{ font-variant-numeric: tabular-nums; }}
.rationale {{ color: #555; font-size: 0.85em; white-space: pre-wrap; margin-top: 0.6em; }}
</style></head><body>
<h1>spacy-recot</h1>
{docs}
</body></html>
"""


def doc_view(doc: Doc, component: str) -> Dict[str, Any]:
    """displaCy's manual data for a doc: its entities, each label with its score."""
    record = doc.user_data.get(USER_DATA_KEY, {}).get(component, {})
    scores = {(e["start_char"], e["end_char"]): e.get("score") for e in record.get("entities", [])}
    ents = []
    for ent in doc.ents:
        score = scores.get((ent.start_char, ent.end_char))
        label = ent.label_ if score is None else f"{ent.label_} {score:.2f}"
        ents.append({"start": ent.start_char, "end": ent.end_char, "label": label})
    return {"text": doc.text, "ents": ents, "title": None}


# displaCy's palette is keyed by label; a label shown with its score gets its base label's colour.
PALETTE = ("#aa9cfc", "#7aecec", "#feca74", "#bfeeb7", "#ff9561", "#c887fb", "#9cc9cc", "#ffeb80", "#e4e7d2", "#ddd")


def entity_table(doc: Doc, component: str) -> str:
    record = doc.user_data.get(USER_DATA_KEY, {}).get(component, {})
    entities = record.get("entities", [])
    if not entities:
        return "<p>No entities.</p>"
    reasons = any(e.get("reason") for e in entities)
    rows = []
    for e in entities:
        score = "" if e.get("score") is None else f"{e['score']:.2f}"
        reason = f"<td>{html.escape(e.get('reason', ''))}</td>" if reasons else ""
        rows.append(
            f"<tr><td>{html.escape(e['text'])}</td><td>{html.escape(e['label'])}</td><td class=score>{score}</td>{reason}</tr>"
        )
    head = "<tr><th>entity</th><th>label</th><th>score</th>" + ("<th>reason</th>" if reasons else "") + "</tr>"
    return "<table>" + head + "".join(rows) + "</table>"


def render_page(docs: Sequence[Doc], component: str = "recot_ner") -> str:
    """A whole HTML page for the docs."""
    parts: List[str] = []
    base_labels = sorted({ent.label_ for doc in docs for ent in doc.ents})
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(base_labels)}
    for doc in docs:
        view_data = doc_view(doc, component)
        colors = {
            e["label"]: colour[e["label"].rsplit(" ", 1)[0] if e["label"] not in colour else e["label"]]
            for e in view_data["ents"]
        }
        view = displacy.render(view_data, style="ent", manual=True, jupyter=False, options={"colors": colors})
        record = doc.user_data.get(USER_DATA_KEY, {}).get(component, {})
        rationale = record.get("rationale")
        note = f"<div class=rationale>{html.escape(rationale)}</div>" if rationale else ""
        parts.append(f"<div class=doc>{view}{entity_table(doc, component)}{note}</div>")
    return PAGE.format(docs="\n".join(parts))

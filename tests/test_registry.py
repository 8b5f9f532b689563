"""Every registered spacy_recot.* name is declared as an entry point and resolves."""

from importlib.metadata import entry_points

import spacy
from spacy.util import registry


def test_every_registered_name_resolves():
    import spacy_recot  # noqa: F401

    names = [name for name in registry.misc.get_all() if name.startswith("spacy_recot.")]
    declared = {ep.name for ep in entry_points(group="spacy_misc") if ep.name.startswith("spacy_recot.")}
    assert set(names) == declared
    for name in names:
        assert callable(registry.misc.get(name))
    for ep in entry_points(group="spacy_misc"):
        if ep.name.startswith("spacy_recot."):
            assert ep.load() is registry.misc.get(ep.name)


def test_factory_entry_point():
    (ep,) = [ep for ep in entry_points(group="spacy_factories") if ep.name == "recot_ner"]
    assert ep.load().__name__ == "make_recot_ner"
    # (has_factory asks spaCy's registry; factory_names is a snapshot a Language class
    # takes when a factory of its own is registered, so it depends on import order.)
    assert spacy.blank("en").has_factory("recot_ner")


def test_names_are_versioned():
    import re

    import spacy_recot  # noqa: F401

    for name in registry.misc.get_all():
        if name.startswith("spacy_recot."):
            assert re.fullmatch(r"spacy_recot\.[A-Z][A-Za-z0-9]+\.v\d+", name), name

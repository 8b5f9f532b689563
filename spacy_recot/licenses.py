"""License files that travel with models and pipelines, so that `spacy package`
ships one: this package's own (Apache-2.0), and a model folder's."""

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Optional, Union

LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def own_license_text() -> Optional[str]:
    """The text of spacy-recot's license (Apache-2.0), from its installed
    metadata; None when it is not installed."""
    try:
        dist = distribution("spacy-recot")
    except PackageNotFoundError:
        return None
    return dist.read_text("licenses/LICENSE") or dist.read_text("LICENSE")


def license_file(folder: Union[str, Path, None]) -> Optional[Path]:
    """A model folder's license file, if it has one."""
    if not folder:
        return None
    return next((Path(folder) / n for n in LICENSE_FILES if (Path(folder) / n).is_file()), None)

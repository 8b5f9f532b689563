"""The package's own exceptions, in a module of their own so that any module
can raise them without importing the backends."""


class ModelLoadError(ValueError):
    """The model could not be loaded; the message says from where and why."""

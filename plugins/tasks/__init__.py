"""Built-in tasks: ``classification`` (the default), ``multilabel`` and ``regression``."""

"""``python -m kdforge.cli``: the ``kdforge`` command."""

from kdforge.cli import run

run()

"""``python -m kdforge``: the same as the ``kdforge`` command."""

from kdforge.cli import run

run()

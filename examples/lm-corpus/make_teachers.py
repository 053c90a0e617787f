"""Build the two small teachers of this example from Python's own docstrings (no downloads).

Writes ``bert/`` (a 2-layer BERT masked LM) and ``gpt2/`` (a 2-layer GPT-2 causal LM)
next to this file, each a ``save_pretrained`` folder with its word-level tokenizer,
trained for a few hundred steps on the installed standard library's docstrings:

    python examples/lm-corpus/make_teachers.py
    kdforge search examples/lm-corpus/config.yaml

Needs ``kdforge[hf,testing]``.
"""

from __future__ import annotations

from pathlib import Path

from kdforge.testing.lm import python_docstrings, tiny_lm

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Train and save both teachers (about a minute on a laptop CPU)."""
    texts = python_docstrings(5000)
    for kind, folder in (("masked", "bert"), ("causal", "gpt2")):
        path = tiny_lm(
            HERE / folder, kind, texts, hidden=64, layers=2, heads=4, block=64, steps=300
        )
        print(f"{kind} teacher: {path}")


if __name__ == "__main__":
    main()

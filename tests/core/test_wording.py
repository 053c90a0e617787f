"""One way to word counts, trial names and a student's parameters."""

from __future__ import annotations

from kdforge import SearchSpace
from kdforge.config import PluginRef
from kdforge.plugin_host.resolve import instantiate
from kdforge.wording import compact_params, plural, trial_name


def test_plural() -> None:
    assert plural(1, "student") == "1 student"
    assert plural(0, "seed") == "0 seeds"
    assert plural(1412, "row") == "1,412 rows"
    assert plural(2, "class") == "2 classes"
    assert plural(15, "epoch") == "15 epochs" and plural(3, "batch") == "3 batches"
    assert plural(3, "index") == "3 indices"
    assert plural(2, "more trial") == "2 more trials"


def test_trial_name() -> None:
    assert trial_name(13) == "trial 013"


def test_compact_params_groups_indexed_keys() -> None:
    arch = {"depth": 2, "width_0": 64, "width_1": 32, "dropout": 0.1234, "act": "relu"}
    assert compact_params(arch) == "depth=2 width[64,32] dropout=0.12 act=relu"


def test_built_in_spaces_describe_depth_widths_and_kernel() -> None:
    def space(name: str) -> SearchSpace:
        plugin = instantiate("search_space", PluginRef(name=name), "student")
        assert isinstance(plugin, SearchSpace)
        return plugin

    assert space("mlp").describe({"depth": 2, "width_0": 64, "width_1": 32}) == "mlp 2x[64,32]"
    cnn = {"depth": 3, "channels_0": 16, "channels_1": 32, "channels_2": 32, "kernel": 3}
    assert space("cnn").describe(cnn) == "cnn 3x[16,32,32] k3"
    resnet = {"stages": 2, "blocks_0": 2, "width_0": 16, "blocks_1": 1, "width_1": 32, "kernel": 5}
    assert space("resnet").describe(resnet) == "resnet [2,1]x[16,32] k5"
    encoder = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128, "pooling": "mean"}
    assert space("transformer").describe(encoder) == "transformer 2L h64 4 heads ffn128"


def test_a_third_party_space_falls_back_to_its_params() -> None:
    class Blocks(SearchSpace):
        name = "blocks"

        def suggest(self, trial, info):  # pragma: no cover - not sampled here
            return None

        def build(self, arch, info):  # pragma: no cover - not built here
            raise NotImplementedError

    assert Blocks().describe({"n": 3, "size_0": 8, "size_1": 4}) == "blocks n=3 size[8,4]"

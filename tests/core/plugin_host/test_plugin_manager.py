"""Plugin discovery and its errors, with real entry points.

Fake third-party distributions are written as ``*.dist-info`` folders (METADATA +
entry_points.txt) next to their modules in a temporary folder put on ``sys.path``:
``importlib.metadata`` discovers them exactly as it discovers pip-installed ones.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from kdforge.cli import main
from kdforge.config import PluginRef
from kdforge.errors import PluginError
from kdforge.plugin_host.manager import (
    BUILTIN_SOURCE,
    PluginRecord,
    PluginWarning,
    get_registry,
    reset_registry,
)
from kdforge.plugins.losses.hinton_kd import HintonKD

GOOD_LOSS = '''
import kdforge
from pydantic import Field
from kdforge.interfaces import HParam, PluginParams
from kdforge.plugins.losses.hinton_kd import HintonKD

CALLS = []


class FakeParams(PluginParams):
    """Parameters of the fake loss."""

    scale: float = Field(2.0, gt=0, description="A scale.")


class FakeLoss(HintonKD):
    """A fake third-party loss.

    Second docstring line.
    """

    name = "fake_loss"
    Params = FakeParams
    hyperparameters = (HParam("margin", 0.5, 2.0, log=True, default=1.0, help="A margin."),)


@kdforge.hookimpl
def register_losses(register):
    CALLS.append(1)
    register("fake_loss", FakeLoss)
'''

ALL_KINDS = '''
import kdforge
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.exporters.onnx import OnnxExporter
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.tasks.regression import Regression
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace


class D(Digits):
    """Fake dataset."""


class T(CheckpointTeacher):
    """Fake teacher."""


class S(MLPSpace):
    """Fake space."""


class L(HintonKD):
    """Fake loss."""


class E(OnnxExporter):
    """Fake exporter."""


class K(Regression):
    """Fake task."""


@kdforge.hookimpl
def register_datasets(register):
    register("all_dataset", D)


@kdforge.hookimpl
def register_teachers(register):
    register("all_teacher", T)


@kdforge.hookimpl
def register_search_spaces(register):
    register("all_space", S)


@kdforge.hookimpl
def register_losses(register):
    register("all_loss", L)


@kdforge.hookimpl
def register_exporters(register):
    register("all_exporter", E)


@kdforge.hookimpl
def register_tasks(register):
    register("all_task", K)
'''


class FakeSite:
    """A folder on sys.path holding fake distributions and their modules."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def add(
        self,
        dist: str,
        entry_points: dict[str, str],
        modules: dict[str, str],
        version: str = "1.2.3",
    ) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[kdforge]\n{lines}")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)
        reset_registry()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KDFORGE_PLUGINS", raising=False)
    monkeypatch.delenv("KDFORGE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    (tmp_path / "site").mkdir()
    fake = FakeSite(tmp_path / "site", monkeypatch)
    reset_registry()
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)
    reset_registry()


def _registry_quietly():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = get_registry()
    return registry, [w for w in caught if issubclass(w.category, PluginWarning)]


def test_entry_point_plugin_is_discovered(site: FakeSite) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    registry, caught = _registry_quietly()
    assert not caught
    record = registry.get("loss", "fake_loss")
    assert (record.source, record.version) == ("kdforge-fake-good", "1.2.3")
    assert record.entry_point == "good = kdforge_fake_good"
    assert registry.get("loss", "hinton_kd").source == BUILTIN_SOURCE


def test_every_register_hook_registers_its_kind(site: FakeSite) -> None:
    site.add("kdforge-fake-all", {"all": "kdforge_fake_all"}, {"kdforge_fake_all": ALL_KINDS})
    registry, caught = _registry_quietly()
    assert not caught
    for kind, name in [
        ("dataset", "all_dataset"),
        ("teacher", "all_teacher"),
        ("search_space", "all_space"),
        ("loss", "all_loss"),
        ("exporter", "all_exporter"),
        ("task", "all_task"),
    ]:
        assert registry.get(kind, name).source == "kdforge-fake-all"


def test_registration_is_lazy_and_once_per_process(site: FakeSite) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    assert "kdforge_fake_good" not in sys.modules  # nothing runs before the registry is needed
    first = get_registry()
    assert sys.modules["kdforge_fake_good"].CALLS == [1]
    assert get_registry() is first and get_registry() is first
    assert sys.modules["kdforge_fake_good"].CALLS == [1]


def test_importing_kdforge_loads_no_plugin() -> None:
    code = (
        "import sys, kdforge, kdforge.plugin_host.manager as pm\n"
        "assert pm._registry is None\n"
        "assert not [m for m in pm.BUILTIN_MODULES if m in sys.modules], 'eager import'\n"
        "kdforge.get_registry()\n"
        "assert all(m in sys.modules for m in pm.BUILTIN_MODULES)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_disable_autoload_keeps_builtins_only(site: FakeSite, monkeypatch) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    monkeypatch.setenv("KDFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = get_registry()
    assert "fake_loss" not in registry.records["loss"]
    assert "hinton_kd" in registry.records["loss"]
    assert "kdforge_fake_good" not in sys.modules


@pytest.mark.parametrize("allow", ["good", "kdforge-fake-good", "kdforge_fake_good, nothing_else"])
def test_allow_list_limits_third_party_plugins(site: FakeSite, monkeypatch, allow: str) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    site.add("kdforge-fake-all", {"all": "kdforge_fake_all"}, {"kdforge_fake_all": ALL_KINDS})
    monkeypatch.setenv("KDFORGE_PLUGINS", allow)
    registry, caught = _registry_quietly()
    assert "fake_loss" in registry.records["loss"]
    assert "all_loss" not in registry.records["loss"] and "kdforge_fake_all" not in sys.modules
    assert "hinton_kd" in registry.records["loss"]  # built-ins always load
    if "nothing_else" in allow:
        assert any("KDFORGE_PLUGINS names 'nothing_else'" in str(w.message) for w in caught)
    else:
        assert not caught


def test_import_failure_warns_and_config_asking_for_it_gets_a_clear_error(
    site: FakeSite,
) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    site.add(
        "kdforge-broken-loss",
        {"broken_loss": "kdforge_broken_loss"},
        {"kdforge_broken_loss": "import kdforge_missing_dependency\n"},
    )
    registry, caught = _registry_quietly()
    assert len(caught) == 1
    message = str(caught[0].message)
    for part in (
        "kdforge-broken-loss",
        "broken_loss = kdforge_broken_loss",
        "ModuleNotFoundError",
        "kdforge_missing_dependency",
    ):
        assert part in message
    assert registry.get("loss", "fake_loss")  # every other plugin still works

    from kdforge.config import SearchConfig
    from kdforge.search.plan import plan_search

    config = SearchConfig.model_validate(
        {
            "name": "x",
            "dataset": {"name": "digits"},
            "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
            "student": {"name": "mlp"},
            "loss": {"name": "broken_loss"},
        }
    )
    with pytest.raises(PluginError) as error:
        plan_search(config)
    text = str(error.value)
    assert "loss 'broken_loss' is not available" in text
    assert "kdforge-broken-loss" in text and "kdforge_missing_dependency" in text
    assert "pip install -U kdforge-broken-loss" in (error.value.hint or "")


def test_register_failure_drops_the_whole_plugin_and_names_it(site: FakeSite) -> None:
    source = '''
    import kdforge
    from kdforge.plugins.datasets.digits import Digits
    from kdforge.plugins.losses.hinton_kd import HintonKD

    class D(Digits):
        """Half dataset."""

    class L(HintonKD):
        """Half loss."""

    @kdforge.hookimpl
    def register_datasets(register):
        register("half_dataset", D)

    @kdforge.hookimpl
    def register_losses(register):
        register("odd_name_loss", L)
        raise RuntimeError("boom while registering")
    '''
    site.add("kdforge-half", {"half": "kdforge_half"}, {"kdforge_half": source})
    registry, caught = _registry_quietly()
    assert len(caught) == 1 and "RuntimeError: boom while registering" in str(caught[0].message)
    assert "half_dataset" not in registry.records["dataset"]  # all or nothing
    # Matched by what it registered before failing, not by its entry-point name.
    with pytest.raises(PluginError, match="failed to register: RuntimeError: boom"):
        registry.get("loss", "odd_name_loss")
    with pytest.raises(PluginError, match="dataset 'half_dataset' is not available"):
        registry.get("dataset", "half_dataset")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "import kdforge\n@kdforge.hookimpl\ndef register_losses(register):\n"
            "    register('not_a_class_loss', object)\n",
            "not a subclass of kdforge.LossStrategy",
        ),
        (
            "import kdforge\nfrom kdforge.interfaces import LossStrategy\n"
            "class Abstract(LossStrategy):\n    '''No __call__.'''\n"
            "@kdforge.hookimpl\ndef register_losses(register):\n"
            "    register('abstract_loss', Abstract)\n",
            "does not implement: __call__",
        ),
        (
            "import kdforge\nfrom kdforge.plugins.losses.hinton_kd import HintonKD\n"
            "@kdforge.hookimpl\ndef register_losses(register):\n"
            "    register('bad name', HintonKD)\n",
            "names must start with a letter",
        ),
        (
            "import kdforge\n@kdforge.hookimpl\ndef register_loss(register):\n    pass\n",
            "'register_loss' is not a kdforge hook (did you mean 'register_losses'?)",
        ),
        ("def register_losses(register):\n    pass\n", "it registered nothing"),
        (
            "import kdforge\n@kdforge.hookimpl\ndef register_losses(register):\n"
            "    kdforge.get_registry()\n",
            "while plugins were being registered",
        ),
    ],
    ids=["not-subclass", "abstract", "bad-name", "unknown-hook", "no-hookimpl", "reentrant"],
)
def test_invalid_plugins_are_reported_not_fatal(site: FakeSite, body: str, expected: str) -> None:
    site.add("kdforge-invalid", {"invalid": "kdforge_invalid"}, {"kdforge_invalid": body})
    registry, caught = _registry_quietly()
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert expected in str(caught[0].message) and "kdforge-invalid" in str(caught[0].message)
    assert registry.failures[0].source == "kdforge-invalid"
    assert "hinton_kd" in registry.records["loss"]
    with pytest.raises(PluginError, match="plugin 'invalid = kdforge_invalid'"):
        registry.get("loss", "invalid")  # matched by entry-point name


def test_same_name_twice_is_an_error_naming_both_sources(site: FakeSite) -> None:
    twin = '''
    import kdforge
    from kdforge.plugins.losses.hinton_kd import HintonKD

    class Twin(HintonKD):
        """Twin."""

    @kdforge.hookimpl
    def register_losses(register):
        register("twin_loss", Twin)
        register("hinton_kd", Twin)
    '''
    site.add("kdforge-twin-a", {"twin_a": "kdforge_twin_a"}, {"kdforge_twin_a": twin})
    site.add("kdforge-twin-b", {"twin_b": "kdforge_twin_b"}, {"kdforge_twin_b": twin})
    registry, caught = _registry_quietly()
    assert {("loss", "twin_loss")} == set(registry.conflicts)
    assert any("twin_loss" in str(w.message) for w in caught)
    with pytest.raises(PluginError) as error:
        registry.get("loss", "twin_loss")
    text = str(error.value)
    assert "registered more than once" in text
    assert "kdforge-twin-a 1.2.3, entry point 'twin_a = kdforge_twin_a'" in text
    assert "kdforge-twin-b 1.2.3, entry point 'twin_b = kdforge_twin_b'" in text
    # A built-in is never displaced: both reuses of hinton_kd are refused, named.
    assert registry.get("loss", "hinton_kd").cls is HintonKD
    refused = sorted(f.source for f in registry.failures if f.stage == "clash")
    assert refused == ["kdforge-twin-a", "kdforge-twin-b"]
    assert registry.get("loss", "logit_mse")  # unrelated names keep working


def test_add_rejects_a_duplicate_directly() -> None:
    registry = get_registry()
    clone = PluginRecord("loss", "hinton_kd", HintonKD, "kdforge-other", "9.9")
    with pytest.raises(PluginError, match=r"kdforge-other 9\.9"):
        registry.add(clone)


def test_unknown_name_lists_available_and_closest() -> None:
    registry = get_registry()
    with pytest.raises(PluginError) as error:
        registry.get("loss", "hinton")
    assert "unknown loss 'hinton'; available:" in str(error.value)
    assert "hinton_kd" in str(error.value) and error.value.hint == "did you mean 'hinton_kd'?"
    with pytest.raises(PluginError, match="unknown plugin kind 'los'") as kind_error:
        registry.get("los", "x")
    assert kind_error.value.hint == "did you mean 'loss'?"


def test_resolving_a_config_reference_uses_the_registry(site: FakeSite) -> None:
    from kdforge.plugin_host.resolve import instantiate

    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    loss = instantiate("loss", PluginRef(name="fake_loss", params={"scale": 3.0}), "loss")
    assert type(loss).__name__ == "FakeLoss" and loss.params.scale == 3.0


def test_plugins_cli_lists_and_shows_third_party_plugins(site: FakeSite, capsys) -> None:
    site.add("kdforge-fake-good", {"good": "kdforge_fake_good"}, {"kdforge_fake_good": GOOD_LOSS})
    site.add(
        "kdforge-broken", {"broken": "kdforge_broken"}, {"kdforge_broken": "raise OSError('x')"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        assert main(["plugins", "--kind", "loss"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " fake_loss " in x)
    assert line.startswith("loss") and "kdforge-fake-good" in line and "A fake third-party" in line
    assert "digits" not in out  # filtered by kind
    assert "(failed) broken = kdforge_broken from kdforge-broken: OSError: x" in out

    assert main(["plugins", "show", "fake_loss"]) == 0
    shown = capsys.readouterr().out
    for part in (
        "fake_loss (loss)",
        "source:      kdforge-fake-good 1.2.3",
        "entry point: good = kdforge_fake_good",
        "Second docstring line.",
        "scale: float = 2.0; > 0",
        "A scale.",
        "loss.margin: float [0.5, 2] log, default 1",
        "A margin.",
    ):
        assert part in shown, part

    assert main(["plugins", "show", "broken"]) == 2
    assert "failed to import: OSError: x" in capsys.readouterr().err
    assert main(["plugins", "show", "fake_los"]) == 2
    assert "did you mean 'fake_loss'?" in capsys.readouterr().err


def test_show_search_space_lists_sampled_hyperparameters(capsys) -> None:
    assert main(["plugins", "show", "mlp", "--kind", "search_space"]) == 0
    shown = capsys.readouterr().out
    assert "student.depth: int [1, 3]" in shown
    assert "student.width_0: int [8, 256] log" in shown
    assert "student.width_2: int [8, 256] log (conditional)" in shown
    assert "max_width: int = 256; >= 1" in shown


SHADOW = '''
import kdforge
from kdforge.plugins.losses.hinton_kd import HintonKD

class Shadow(HintonKD):
    """A third-party loss that reuses the built-in name."""

@kdforge.hookimpl
def register_losses(register):
    register("hinton_kd", Shadow)
    register("shadow_extra", Shadow)
'''


def test_a_builtin_name_reused_by_a_third_party_plugin_is_refused_and_named(
    site: FakeSite, capsys
) -> None:
    site.add("kdforge-shadow", {"shadow": "kdforge_shadow"}, {"kdforge_shadow": SHADOW})
    registry, caught = _registry_quietly()
    assert registry.get("loss", "hinton_kd").cls is HintonKD  # the built-in stays
    assert registry.get("loss", "shadow_extra").source == "kdforge-shadow"  # the rest loads
    (warning,) = [w for w in caught if "hinton_kd" in str(w.message)]
    assert "'kdforge-shadow'" in str(warning.message) and "refused" in str(warning.message)
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    assert "(failed) shadow = kdforge_shadow from kdforge-shadow" in listing
    assert "kdforge built-in name" in listing


def test_the_contract_kit_names_the_clashing_distribution(site: FakeSite) -> None:
    from kdforge.testing import LossContract

    site.add("kdforge-shadow", {"shadow": "kdforge_shadow"}, {"kdforge_shadow": SHADOW})
    twin = '''
    import kdforge
    from kdforge.plugins.losses.logit_mse import LogitMSE

    class Twin(LogitMSE):
        """Twin."""

    @kdforge.hookimpl
    def register_losses(register):
        register("shared_loss", Twin)
    '''
    site.add("kdforge-innocent", {"innocent": "kdforge_innocent"}, {"kdforge_innocent": twin})
    site.add("kdforge-clasher", {"clasher": "kdforge_clasher"}, {"kdforge_clasher": twin})
    _registry_quietly()
    import kdforge_innocent
    import kdforge_shadow

    # The built-in's own contract still passes: the shadow did not displace it.
    builtin = type("BuiltinContract", (LossContract,), {"registered_name": "hinton_kd"})
    builtin().test_registered_under_its_name(HintonKD())
    # The shadow's contract fails, naming itself as the one refused.
    shadow = type("ShadowContract", (LossContract,), {"registered_name": "hinton_kd"})
    with pytest.raises(pytest.fail.Exception, match=r"built-in name: 'kdforge-shadow'"):
        shadow().test_registered_under_its_name(kdforge_shadow.Shadow())
    # The innocent package's contract names the other distribution as the cause.
    innocent = type("InnocentContract", (LossContract,), {"registered_name": "shared_loss"})
    with pytest.raises(pytest.fail.Exception) as failed:
        innocent().test_registered_under_its_name(kdforge_innocent.Twin())
    text = str(failed.value)
    assert "kdforge-clasher 1.2.3" in text and "clashes with this plugin" in text
    assert "kdforge-innocent" not in text


def test_show_names_the_kind_of_a_failed_plugin(site: FakeSite) -> None:
    from kdforge.plugin_host.info import describe_plugin

    broken = '''
    import kdforge
    from kdforge.plugins.losses.hinton_kd import HintonKD

    class L(HintonKD):
        """Broken loss."""

    @kdforge.hookimpl
    def register_losses(register):
        register("broken_kd", L)
        raise RuntimeError("boom")
    '''
    site.add("kdforge-broken-kd", {"broken_kd": "kdforge_broken_kd"}, {"kdforge_broken_kd": broken})
    site.add(
        "kdforge-missing",
        {"missing_loss": "kdforge_missing_loss"},
        {"kdforge_missing_loss": "import kdforge_no_such_dependency\n"},
    )
    _registry_quietly()
    with pytest.raises(PluginError, match=r"^loss 'broken_kd' is not available"):
        describe_plugin("broken_kd")
    # An import failure registered nothing: no kind is claimed.
    with pytest.raises(PluginError, match=r"^plugin 'missing_loss' is not available") as error:
        describe_plugin("missing_loss")
    assert "dataset" not in str(error.value)

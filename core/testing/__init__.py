"""Contract tests for kdforge plugins: subclass one per plugin in your pytest suite.

Every plugin kind has a contract class whose ``test_*`` methods check what the host
relies on (shapes, finiteness, gradients, determinism, picklability, documented
parameters). Subclass it in a test module, name the subclass ``Test...`` and say which
plugin to check::

    from kdforge.testing import LossContract
    from kdforge_my_loss import MyLoss

    class TestMyLoss(LossContract):
        plugin_class = MyLoss
        plugin_params = {}              # config params (validated by MyLoss.Params)
        registered_name = "my_loss"     # optional: also check it is discovered

When building the plugin needs more (files, ``tmp_path``), override the ``plugin``
fixture instead::

    class TestMyTeacher(TeacherContract):
        @pytest.fixture
        def plugin(self, tmp_path):
            return MyTeacher(MyTeacher.Params(path=str(make_weights(tmp_path))))

Class attributes tune each contract (see each class). This module needs pytest and
cloudpickle: ``pip install "kdforge[testing]"``.
"""

from kdforge.errors import PluginError

# One clear error instead of a ModuleNotFoundError from deep inside the kit: pytest and
# cloudpickle come with the `testing` extra, not with kdforge itself.
try:
    import cloudpickle  # noqa: F401
    import pytest  # noqa: F401
except ImportError as exc:
    raise PluginError(
        f"kdforge.testing needs {exc.name or 'pytest and cloudpickle'}, which is not installed",
        hint='install the plugin test kit\'s extra: pip install "kdforge[testing]"',
    ) from None

from kdforge.testing._base import PluginContract
from kdforge.testing._data import DatasetContract, TeacherContract
from kdforge.testing._loss import LossContract
from kdforge.testing._model import ExporterContract, SearchSpaceContract
from kdforge.testing._task import TaskContract

__all__ = [
    "CONTRACTS",
    "DatasetContract",
    "ExporterContract",
    "LossContract",
    "PluginContract",
    "SearchSpaceContract",
    "TaskContract",
    "TeacherContract",
]

#: Plugin kind -> its contract class.
CONTRACTS: dict[str, type[PluginContract]] = {
    "dataset": DatasetContract,
    "teacher": TeacherContract,
    "search_space": SearchSpaceContract,
    "loss": LossContract,
    "exporter": ExporterContract,
    "task": TaskContract,
}

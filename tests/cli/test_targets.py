"""Tests of TARGET resolution and of the one-line errors for bad handler modules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import PluginLoadError
from pubsub_cli.targets import load_targets

from .conftest import CLI, EXAMPLES

GOOD = """
from dataclasses import dataclass
from core import Event, Router, EventBus

@dataclass(frozen=True, slots=True)
class {name}Happened(Event, type_name="{name}Happened"):
    n: int

router = Router()
other = Router()
bus = EventBus()

@router.subscribe({name}Happened)
async def on_it(event):
    return None
"""


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.usefixtures("isolated_imports")
class TestLoading:
    """Each TARGET form finds the right routers."""

    def test_file_takes_every_router_and_bus(self, tmp_path: Path) -> None:
        """Without an attribute every module-level Router and EventBus is taken."""
        path = write(tmp_path, "tg_file", GOOD.format(name="TgFile"))
        found = load_targets([str(path)])
        assert len(found.routers) == 2
        assert len(found.buses) == 1

    def test_attribute(self, tmp_path: Path) -> None:
        """module:attribute takes that object only."""
        path = write(tmp_path, "tg_attr", GOOD.format(name="TgAttr"))
        found = load_targets([f"{path}:router"])
        assert len(found.routers) == 1
        assert not found.buses

    def test_dotted_module_with_app_dir(self, tmp_path: Path) -> None:
        """A dotted module is imported from --app-dir."""
        pkg = tmp_path / "tgpkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        write(pkg, "handlers", GOOD.format(name="TgDotted"))
        found = load_targets(["tgpkg.handlers"], app_dir=tmp_path)
        assert len(found.routers) == 2

    def test_factory(self, tmp_path: Path) -> None:
        """module:callable calls it for a Router."""
        path = write(
            tmp_path,
            "tg_factory",
            GOOD.format(name="TgFactory") + "\ndef make():\n    return router\n",
        )
        assert len(load_targets([f"{path}:make"]).routers) == 1


@pytest.mark.usefixtures("isolated_imports")
class TestErrors:
    """Bad TARGETs are one PluginLoadError naming the file and the problem."""

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file says so."""
        with pytest.raises(PluginLoadError, match="no such file"):
            load_targets([str(tmp_path / "nope.py")])

    def test_syntax_error_has_line(self, tmp_path: Path) -> None:
        """A syntax error names the file and the line."""
        path = write(tmp_path, "tg_syntax", "x = 1\ndef broken(:\n    pass\n")
        with pytest.raises(PluginLoadError, match=r"syntax error in .*tg_syntax.py at line 2"):
            load_targets([str(path)])

    def test_import_error_inside(self, tmp_path: Path) -> None:
        """An import failing inside the user's module names the failing line."""
        path = write(tmp_path, "tg_import", "import os\nimport not_a_real_module_xyz\n")
        with pytest.raises(PluginLoadError, match=r"tg_import.py:2: ModuleNotFoundError"):
            load_targets([str(path)])

    def test_no_router(self, tmp_path: Path) -> None:
        """A module without a Router or EventBus is refused."""
        path = write(tmp_path, "tg_empty", "x = 1\n")
        with pytest.raises(PluginLoadError, match="defines no Router or EventBus"):
            load_targets([str(path)])

    def test_unknown_module(self) -> None:
        """A dotted module that does not exist is named."""
        with pytest.raises(PluginLoadError, match="no module named 'no_such_pkg_xyz'"):
            load_targets(["no_such_pkg_xyz.handlers"])

    def test_missing_attribute(self, tmp_path: Path) -> None:
        """module:attribute with no such attribute says which."""
        path = write(tmp_path, "tg_noattr", GOOD.format(name="TgNoAttr"))
        with pytest.raises(PluginLoadError, match="has no attribute 'nope'"):
            load_targets([f"{path}:nope"])

    def test_unknown_plugin(self) -> None:
        """--plugin with an unknown name lists the known ones."""
        with pytest.raises(PluginLoadError, match=r"no such entry point in pubsub\.handlers"):
            load_targets([], plugins=["nope"])


class TestThroughTheCLI:
    """The command line prints one line and exits 1, with the traceback only under -v."""

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            pytest.param(None, "no such file", id="missing"),
            pytest.param("def f(:\n", "at line 1", id="syntax"),
            pytest.param("raise RuntimeError('boom')\n", "RuntimeError: boom", id="raises"),
            pytest.param("x = 1\n", "defines no Router", id="no-router"),
        ],
    )
    def test_run_bad_target(
        self, cli: CLI, tmp_path: Path, body: str | None, expected: str
    ) -> None:
        """Each bad module is one line on stderr, exit 1, no traceback."""
        path = tmp_path / "bad_target.py"
        if body is not None:
            path.write_text(body)
        r = cli("run", str(path), "--once")
        assert r.exit_code == 1
        assert expected in r.error_line
        assert "Traceback" not in r.stderr
        assert not (tmp_path / "pubsub.db").exists()

    def test_verbose_shows_traceback(self, cli: CLI, tmp_path: Path) -> None:
        """-v adds the traceback before the one line."""
        path = tmp_path / "bad_verbose.py"
        path.write_text("raise RuntimeError('boom')\n")
        r = cli("-v", "run", str(path), "--once")
        assert r.exit_code == 1
        assert "Traceback" in r.stderr
        assert "RuntimeError: boom" in r.error_line


class TestReachedTwice:
    """A subscription reached twice (a module's Router and the EventBus that includes
    it, or one TARGET given twice) is taken once; another handler under a name already
    taken is still refused."""

    PLACED = '{"order_id": "A-1", "sku": "BOOK", "total": "12.50"}'

    def publish_one(self, cli: CLI) -> None:
        r = cli(
            "publish", "--app", str(EXAMPLES / "orders.py"), "OrderPlaced", "--data", self.PLACED
        )
        assert r.exit_code == 0, r.stderr

    @pytest.mark.parametrize("times", [1, 2])
    def test_router_and_bus_of_one_module(self, cli: CLI, times: int) -> None:
        self.publish_one(cli)
        r = cli("run", *[str(EXAMPLES / "middleware.py")] * times, "--once")
        assert r.exit_code == 0, r.stderr
        assert sys.modules["middleware"].seen == ["A-1"]  # handled once
        assert r.stderr.count("middleware: OrderPlaced") == 1  # the middleware ran once

    def test_same_target_twice(self, cli: CLI, tmp_path: Path) -> None:
        self.publish_one(cli)
        log = tmp_path / "log.jsonl"
        orders = str(EXAMPLES / "orders.py")
        r = cli("run", orders, orders, "--once", env={"ORDERS_LOG": str(log)})
        assert r.exit_code == 0, r.stderr
        audits = [line for line in log.read_text().splitlines() if '"audit"' in line]
        assert len(audits) == 1

    def test_other_handler_same_name_refused(self, cli: CLI, tmp_path: Path) -> None:
        body = GOOD.format(name="Clash") + textwrap.dedent(
            """
            @other.subscribe(ClashHappened, name=on_it.__module__ + ".on_it")
            async def another(event):
                return None
            """
        )
        path = write(tmp_path, "clash", body)
        r = cli("run", str(path), "--once")
        assert r.exit_code == 1
        assert "two different handlers are named" in r.error_line


EVENTS_ONLY = """
from dataclasses import dataclass
from core import Event, Router

@dataclass(frozen=True, slots=True)
class {name}Placed(Event, type_name="{name}Placed"):
    order_id: str

router = Router()
second = Router()
both = [router, second]
limit = 5

def needs(x):
    return router

def gives_number():
    return 3

def boom():
    raise RuntimeError("factory failed")
"""


@pytest.mark.usefixtures("isolated_imports")
class TestAttributeKinds:
    """TARGET:attribute takes a Router, an EventBus, a list of them or a factory, and
    names anything else without calling it."""

    def module(self, tmp_path: Path, name: str) -> Path:
        return write(tmp_path, f"tg_{name.lower()}", EVENTS_ONLY.format(name=name))

    def test_event_class_is_refused_without_being_called(self, tmp_path: Path) -> None:
        """An event class is named as such; nothing tries to construct it."""
        path = self.module(tmp_path, "Cls")
        with pytest.raises(PluginLoadError) as info:
            load_targets([f"{path}:ClsPlaced"])
        message = str(info.value)
        assert "'ClsPlaced' is an event class (tg_cls.ClsPlaced)" in message
        assert "expected a Router, an EventBus" in message
        assert "missing" not in message  # no TypeError from calling the class

    @pytest.mark.parametrize(
        ("attr", "expected"),
        [
            pytest.param("limit", "'limit' is an int (5)", id="number"),
            pytest.param("needs", "is a function ('needs') that needs arguments", id="args"),
            pytest.param("gives_number", "gives_number() returned an int (3)", id="returns-int"),
        ],
    )
    def test_other_attributes_say_what_they_are(
        self, tmp_path: Path, attr: str, expected: str
    ) -> None:
        """The one-line error says what the attribute is and what is expected."""
        path = self.module(tmp_path, f"Other{attr.title().replace('_', '')}")
        with pytest.raises(PluginLoadError) as info:
            load_targets([f"{path}:{attr}"])
        assert expected in str(info.value)
        assert "expected a Router" in str(info.value)

    def test_failing_factory_points_at_the_users_line(self, tmp_path: Path) -> None:
        """A factory that raises is reported at its own line, not in pubsub's source."""
        path = self.module(tmp_path, "Boom")
        with pytest.raises(PluginLoadError, match=r"tg_boom.py:\d+: RuntimeError: factory failed"):
            load_targets([f"{path}:boom"])

    def test_list_of_routers(self, tmp_path: Path) -> None:
        """A list of routers contributes each of them."""
        path = self.module(tmp_path, "Both")
        assert len(load_targets([f"{path}:both"]).routers) == 2

    def test_cli_one_line_exit_1(self, cli: CLI, tmp_path: Path) -> None:
        """Through the command line it is one line, exit 1, no traceback."""
        path = self.module(tmp_path, "Cli")
        r = cli("run", f"{path}:CliPlaced", "--once")
        assert r.exit_code == 1
        assert "is an event class" in r.error_line
        assert "Traceback" not in r.stderr

"""Declared versions are the tested ones: constraints/lowest.txt pins every dependency's lower
bound, the installed versions lie in the declared ranges, and the SLURM launcher refuses a
hydra-submitit-launcher it was not copied from."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO


def declared() -> dict[str, Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


def lowest() -> dict[str, str]:
    lines = (REPO / "constraints" / "lowest.txt").read_text().splitlines()
    pins = [re.match(r"^([\w.-]+)==([\w.+]+)", line) for line in lines]
    return {m.group(1): m.group(2) for m in pins if m}


def lower_bound(req: Requirement) -> str | None:
    return next((s.version for s in req.specifier if s.operator == ">="), None)


def test_the_lowest_constraints_pin_every_lower_bound():
    pins = lowest()
    for name, req in declared().items():
        bound = lower_bound(req)
        if bound is None:  # unpinned on purpose (omegaconf: hydra-core decides it)
            continue
        assert name in pins, f"{name}: lower bound {bound} not in constraints/lowest.txt"
        assert Version(pins[name]) == Version(bound), (name, pins[name], bound)
        assert Version(pins[name]) in req.specifier, (name, pins[name], str(req.specifier))


def test_what_is_installed_here_is_in_the_declared_ranges():
    for name, req in declared().items():
        assert req.specifier.contains(version(name), prereleases=True), (
            f"{name} {version(name)} installed, declared {req.specifier}"
        )


def test_the_ui_formats_need_the_mlflow_they_were_written_for():
    # initsweep.tracking.ui writes saved views and notes as MLflow 3.17's UI reads them
    assert Version(lower_bound(declared()["mlflow"]) or "0") >= Version("3.17")


def test_the_slurm_launcher_refuses_a_plugin_it_was_not_copied_from():
    from hydra_plugins.initsweep_launchers.slurm_launcher import COPIED_FROM, check_plugin_version
    from initsweep.errors import ConfigError

    check_plugin_version()  # the installed one is a copied one
    assert version("hydra-submitit-launcher") in COPIED_FROM
    with pytest.raises(ConfigError) as err:
        check_plugin_version("1.3.0")
    assert str(err.value) == (
        "hydra/launcher=slurm: hydra-submitit-launcher 1.3.0 is installed; initsweep's SLURM "
        "launcher copies its launch from 1.2.0: pip install 'hydra-submitit-launcher==1.2.0'"
    )
    spec = declared()["hydra-submitit-launcher"].specifier
    assert all(Version(v) in spec for v in COPIED_FROM) and Version("1.3.0") not in spec

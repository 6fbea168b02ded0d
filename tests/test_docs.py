"""The docs keep up with the code: every config choice that exists is documented."""

from __future__ import annotations

import re

from tests.conftest import CONF, REPO

NOT_CHOICES = {"config.yaml"}  # the root config
NOT_GROUPS = {"shared"}  # merged into init choices, not a group a user picks from


def _docs_text() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")])


def _choices() -> list[tuple[str, str]]:
    """(group, choice) for every yaml file under conf/, e.g. ("init", "s1/uniform_0_1")."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        relative = path.relative_to(CONF)
        if relative.name in NOT_CHOICES or relative.parts[0] in NOT_GROUPS:
            continue
        parts = relative.with_suffix("").parts
        depth = 2 if parts[0] == "hydra" else 1  # hydra/launcher/<choice>
        found.append(("/".join(parts[:depth]), "/".join(parts[depth:])))
    return found


def test_every_config_choice_is_documented():
    text = _docs_text()
    missing = [
        f"{group}={choice}"
        for group, choice in _choices()
        if f"`{choice}`" not in text and f"{group}={choice}" not in text
    ]
    assert not missing, f"conf/ choices not mentioned in README.md or docs/: {missing}"


def test_every_config_group_is_in_the_configuration_table():
    table = (REPO / "docs" / "configuration.md").read_text()
    groups = {group for group, _ in _choices()}
    assert groups <= set(re.findall(r"^\| `([\w/]+)` \|", table, re.MULTILINE)), groups


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 260, len(lines)
    assert any("make sweep" in line for line in lines[:40])
    assert any("make test" in line for line in lines[:40])


def test_every_subpackage_says_what_it_holds_and_is_in_the_architecture_map():
    """Each folder of the package is a layer: its ``__init__`` docstring says what lives there
    and what it may import, and docs/architecture.md names it (the map a newcomer reads first)."""
    import ast

    text = (REPO / "docs" / "architecture.md").read_text()
    package = REPO / "src" / "initsweep"
    for init in sorted(package.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 15, f"{init.parent.name}/__init__.py has no docstring"
        assert f"{init.parent.name}/" in text, f"{init.parent.name}/ missing from the map"

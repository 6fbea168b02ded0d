"""A new sqlite store in milliseconds: a copy of an empty store MLflow migrated once.

MLflow creates the schema of a new sqlite store by running every one of its Alembic migrations
(``mlflow.store.db.utils._initialize_tables``): several seconds per store, the largest part of a
demo sweep after the imports (docs/performance.md). The result is the same for every store of one
MLflow version, so it is made once, kept as a template in the user's cache folder (keyed by the
MLflow version) and copied. The template holds the migrated tables only, no rows of ours: MLflow
adds its Default experiment, with the new store's own artifact root, when it first opens the copy
(``SqlAlchemyStore.__init__``), as it does after migrating a new file. MLflow still checks the
copy's schema revision on opening it (``_verify_schema``).

Anything unexpected (no cache folder, a private MLflow function gone) leaves the file to MLflow,
which creates it the slow way. A copy is put in place with ``os.link``, which never replaces an
existing file: two processes creating the same store at once get one store, not a torn one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import mlflow

from initsweep.vocab import NO_STORE_TEMPLATE_ENV as ENV_DISABLE


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/initsweep`` (default ``~/.cache/initsweep``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "initsweep"


def template_path() -> Path:
    return cache_dir() / f"mlflow-{mlflow.__version__}-empty-store.db"


def _scratch_beside(path: Path) -> Path:
    """A new empty file next to ``path`` (same file system, for link/replace), created with the
    umask's permissions, as MLflow's own sqlite file would be."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    scratch.open("xb").close()
    return scratch


def _make_template(path: Path) -> None:
    """Migrate an empty sqlite file as MLflow does for a new store; put it at ``path``."""
    # SQLAlchemy and MLflow's migrations load only when a template is made (once per version)
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _scratch_beside(path)
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{scratch}")
        try:
            _initialize_tables(engine)
            _verify_schema(engine)
        finally:
            engine.dispose()
        os.replace(scratch, path)  # a concurrent maker's template is as good as this one
    finally:
        Path(scratch).unlink(missing_ok=True)


def create_from_template(db: Path) -> bool:
    """Create the sqlite store file ``db`` (absent) as a copy of the migrated template; returns
    whether it did (False: MLflow will create it on first use)."""
    if os.environ.get(ENV_DISABLE) or db.exists() or db.name == ":memory:":
        return False
    try:
        template = template_path()
        if not template.exists():
            _make_template(template)
        scratch = _scratch_beside(db)
        try:
            shutil.copyfile(template, scratch)
            os.link(scratch, db)  # never replaces: whoever created db first wins
        finally:
            Path(scratch).unlink(missing_ok=True)
    except FileExistsError:
        return False  # created meanwhile by another process
    except Exception:  # noqa: BLE001 - MLflow's own path still creates the store
        return False
    return True

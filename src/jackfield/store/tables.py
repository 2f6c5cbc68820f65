"""Import every model module so ``Base.metadata`` knows all tables (for Alembic).

Model modules are ``models.py`` (foundation) and ``models_<area>.py`` (runtime, oauth, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def load_all_models() -> None:
    importlib.import_module(f"{__package__}.models")
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("models_"):
            importlib.import_module(f"{__package__}.{info.name}")

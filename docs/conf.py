"""Sphinx configuration for the airflow-provider-gong documentation (``make docs``: warnings are errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# autodoc imports the package from this checkout, not from whatever copy the venv has installed.
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))

from airflow_provider_gong import __version__  # noqa: E402

project = "airflow-provider-gong"
author = "airflow-provider-gong maintainers"
copyright = "airflow-provider-gong maintainers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"airflow-provider-gong {release}"
html_theme_options = {"description": "Gong's Meetings API from Apache Airflow 3", "fixed_sidebar": True}

"""The ``lit-superposition`` command: LightningCLI for training, and the analysis commands.

Rooms: ``main`` (the entry point, the commands and exit codes), ``configs`` (config lookup),
``messages`` (one-line errors), ``resume`` (checkpoints and run directories), ``lightning`` (the
LightningCLI class of ``fit``), and one file per analysis command. Nothing heavy is imported here:
``lit-superposition --help`` answers without importing torch or Lightning.
"""

from __future__ import annotations

from lit_superposition.cli.configs import bundled_configs, resolve_config_path
from lit_superposition.cli.main import main
from lit_superposition.cli.messages import quiet_lightning
from lit_superposition.lazy import lazy_exports

__all__ = ["LitSuperpositionCLI", "build_cli", "bundled_configs", "main", "quiet_lightning", "resolve_config_path"]

__getattr__ = lazy_exports(__name__, {"LitSuperpositionCLI": "lit_superposition.cli.lightning", "build_cli": "lit_superposition.cli.lightning"})

"""The ``lit-superposition`` command: LightningCLI for training, and the analysis commands.

Rooms: ``configs`` (config lookup), ``messages`` (one-line errors), ``resume`` (checkpoints and run
directories), ``lightning`` (the LightningCLI class), ``main`` (the entry point and exit codes).
"""

from lit_superposition.cli.configs import bundled_configs, resolve_config_path
from lit_superposition.cli.lightning import LitSuperpositionCLI, build_cli
from lit_superposition.cli.main import main

__all__ = ["LitSuperpositionCLI", "build_cli", "bundled_configs", "main", "resolve_config_path"]

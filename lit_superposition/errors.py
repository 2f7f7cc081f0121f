"""The one exception type for bad input: the CLI prints it as a single line and exits with code 2."""


class ConfigError(ValueError):
    """A setting is invalid. The message names the setting, the value and what is allowed."""


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss (or the weights) became NaN or infinite. The message names the step and instances."""

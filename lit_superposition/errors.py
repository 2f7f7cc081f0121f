"""The one exception type for bad input: the CLI prints it as a single line and exits with code 2."""


class ConfigError(ValueError):
    """A setting is invalid. The message names the setting, the value and what is allowed."""

"""The one exception type users see for bad input: it names the field and the fix."""


class ConfigError(ValueError):
    """Bad user input (a flag, a file, an argument). The message says what is wrong and how to fix it."""

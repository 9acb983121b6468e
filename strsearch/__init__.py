"""strsearch: the command-line entry point that ties str_core, workers and service together."""

__version__ = "0.1.0"

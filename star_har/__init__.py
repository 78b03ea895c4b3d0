"""star-har: the command-line application tying model/, train/ and realtime/ together."""

__version__ = "0.1.0"

r"""The ``altheory`` command line: :mod:`altheory.cli.main` builds the parser, one module per
subcommand does the work (imported only when its command runs)."""

"""``python -m altheory.cli``: the same as the ``altheory`` command."""

from altheory.cli.main import main

raise SystemExit(main())

"""``python -m altheory``: the same as the ``altheory`` command."""

from altheory.cli.main import main

raise SystemExit(main())

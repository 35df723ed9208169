"""`python -m shared`: the command-line interface (see shared.cli)."""

from shared.cli import main

raise SystemExit(main())

"""Allow ``python -m lhymirror``."""

from lhymirror.cli import main

raise SystemExit(main())

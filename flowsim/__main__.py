"""``python -m flowsim``: the same as the ``flowsim`` command."""

from flowsim.cli import main

raise SystemExit(main())

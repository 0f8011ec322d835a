"""`python -m triage_protocols assess | check`; see triage_protocols/cli.py."""

from triage_protocols.cli import main

raise SystemExit(main())

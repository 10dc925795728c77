"""`python -m auditor` is the `pgolf` command."""

from auditor.cli import main

main()

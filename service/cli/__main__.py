"""`python -m service.cli`: the `lifecycle` command without its console script."""

from service.cli.main import main

main()

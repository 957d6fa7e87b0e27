"""`python -m coordinator` is `sq-coordinator`."""

from coordinator.main import main

main()

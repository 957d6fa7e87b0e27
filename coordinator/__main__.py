"""`python -m coordinator` is `sq-coordinator`."""

from stablequeue_coordinator.main import main

main()

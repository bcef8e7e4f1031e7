"""The multi-host cluster test (make cluster-test)."""

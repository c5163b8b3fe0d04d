"""Analysis of trained runs: run records, restoring a run, linear CKA, linear probes."""

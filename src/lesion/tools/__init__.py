"""Tools around the studies: the make-study wrapper (run), benchmarks (bench, dagbench)."""

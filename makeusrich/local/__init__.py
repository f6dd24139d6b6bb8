"""`makeusrich up`: the whole system on one machine, from the same pair files that go to a cluster."""

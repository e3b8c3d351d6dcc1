"""Pictures and tables from networks, evaluations and run records: conv1's kernels, confusions,
predictions and neighbours, and sweep reports."""

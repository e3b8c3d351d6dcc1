"""After a run: evaluation through the system's metrics, pictures of the network, sweep reports."""

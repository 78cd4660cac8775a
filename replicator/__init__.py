"""logpipe replicator: Pub/Sub envelopes -> exactly-once GCS files (hourly partitions, manifests) -> BigQuery."""

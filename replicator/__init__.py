"""logpipe replicator: Pub/Sub envelopes -> exactly-once files in GCS (hourly partitions, manifests, _SUCCESS) -> BigQuery."""

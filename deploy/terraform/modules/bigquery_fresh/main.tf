# A tier's fresh table `_fresh_<tier>`: rows landed but not yet committed by finalization, for every category of the
# tier in one generic schema (one load job per batch per tier). The category views union it with the committed
# tables for a horizon; rows older than that are never shown, so partitions expire a day later.
# Mirrors replicator/bigquery/schema.py:fresh_schema, names.py:fresh_table and tables.py:fresh_expiration_days.

locals {
  table_id = "_fresh_${replace(var.tier, "-", "_")}"
  columns = [
    { name = "category", type = "STRING", mode = "REQUIRED" },
    { name = "source", type = "STRING", mode = "REQUIRED", description = "The staging object the row came from." },
    { name = "event_id", type = "STRING", mode = "REQUIRED" },
    { name = "event_time", type = "TIMESTAMP", mode = "REQUIRED" },
    { name = "ingest_time", type = "TIMESTAMP", mode = "NULLABLE" },
    { name = "payload_json", type = "JSON", mode = "NULLABLE" },
    { name = "payload_bytes", type = "BYTES", mode = "NULLABLE" },
    { name = "attributes", type = "JSON", mode = "NULLABLE" },
    { name = "producer", type = "STRING", mode = "NULLABLE" },
    { name = "client_id", type = "STRING", mode = "NULLABLE" },
    { name = "envelope_id", type = "STRING", mode = "NULLABLE" },
    { name = "fields", type = "JSON", mode = "NULLABLE" },
  ]
  expiration_days = ceil(var.horizon_hours / 24) + 1
}

resource "google_bigquery_table" "fresh" {
  project             = var.project_id
  dataset_id          = var.dataset_id
  table_id            = local.table_id
  description         = "logpipe: fresh (not yet committed) rows of tier ${var.tier}. Query the category views."
  labels              = merge(var.labels, { logpipe_tier = var.tier })
  deletion_protection = var.deletion_protection
  clustering          = ["category", "event_id"]
  schema              = jsonencode(local.columns)

  time_partitioning {
    type          = "DAY"
    field         = "event_time"
    expiration_ms = local.expiration_days * 86400000
  }
}

# The BigQuery side of one category: today a single table named after the category.
# The loading design (issue 5) may add helper tables, e.g. a `<category>_fresh` staging table with the user-facing
# name as a view over both; that change belongs here and nowhere else (see docs/deploy.md).

locals {
  base_columns = [
    { name = "event_id", type = "STRING", mode = "REQUIRED", description = "Unique id of the event (UUIDv7 from the SDK)." },
    { name = "event_time", type = "TIMESTAMP", mode = "REQUIRED", description = "When the event happened; the partitioning column." },
    { name = "ingest_time", type = "TIMESTAMP", mode = "NULLABLE", description = "When a front-end accepted the event." },
    { name = "payload", type = var.category.payload_format == "json" ? "JSON" : "BYTES", mode = "NULLABLE", description = "The event's payload." },
    { name = "attributes", type = "JSON", mode = "NULLABLE", description = "Producer-supplied key/value attributes." },
    { name = "producer", type = "STRING", mode = "NULLABLE", description = "Name of the producing service." },
    { name = "client_id", type = "STRING", mode = "NULLABLE", description = "Id of the SDK client that sent the event." },
    { name = "envelope_id", type = "STRING", mode = "NULLABLE", description = "Envelope (Pub/Sub message) that carried the event." },
  ]
  field_columns = [
    for f in var.category.fields : { name = f.name, type = f.type, mode = "NULLABLE", description = f.description }
  ]
  columns = concat(local.base_columns, local.field_columns)
}

resource "google_bigquery_table" "events" {
  project             = var.project_id
  dataset_id          = var.dataset_id
  table_id            = var.category.name
  description         = var.category.description
  labels              = merge(var.labels, { logpipe_category = var.category.name })
  deletion_protection = var.deletion_protection
  clustering          = var.category.clustering
  schema              = jsonencode(local.columns)

  time_partitioning {
    type          = "DAY"
    field         = "event_time"
    expiration_ms = var.category.partition_expiration_days == null ? null : var.category.partition_expiration_days * 86400000
  }
}

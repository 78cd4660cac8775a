# modules/bigquery_category: the committed table's schema, partitioning and clustering come from the category definition.

mock_provider "google" {}

variables {
  project_id          = "my-proj-123"
  dataset_id          = "logpipe"
  deletion_protection = true
  labels              = {}
  category = {
    name           = "ads_click"
    description    = "A user clicked an ad."
    payload_format = "json"
    fields = [
      { name = "campaign_id", type = "STRING", description = "Campaign of the ad." },
      { name = "cost_micros", type = "INT64", description = "" },
    ]
    clustering                = ["campaign_id", "event_id"]
    partition_expiration_days = 30
  }
}

run "json_category_table" {
  command = plan
  module {
    source = "./modules/bigquery_category"
  }

  assert {
    condition     = google_bigquery_table.committed.table_id == "ads_click__committed" && google_bigquery_table.committed.dataset_id == "logpipe"
    error_message = "The committed table is <category>__committed, in the catalog's dataset."
  }
  assert {
    condition     = output.view_id == "ads_click"
    error_message = "Users query the view named after the category."
  }
  assert {
    condition = [for c in jsondecode(google_bigquery_table.committed.schema) : "${c.name}:${c.type}:${c.mode}"] == [
      "event_id:STRING:REQUIRED", "event_time:TIMESTAMP:REQUIRED", "ingest_time:TIMESTAMP:NULLABLE",
      "payload:JSON:NULLABLE", "attributes:JSON:NULLABLE", "producer:STRING:NULLABLE", "client_id:STRING:NULLABLE",
      "envelope_id:STRING:NULLABLE", "campaign_id:STRING:NULLABLE", "cost_micros:INT64:NULLABLE",
    ]
    error_message = "Schema must be the fixed columns followed by one NULLABLE column per category field."
  }
  assert {
    condition     = [for c in jsondecode(google_bigquery_table.committed.schema) : lookup(c, "description", null) if contains(["campaign_id", "cost_micros"], c.name)] == ["Campaign of the ad.", null]
    error_message = "A field's description is kept; an empty one is left out (as BigQuery returns it)."
  }
  assert {
    condition = (
      google_bigquery_table.committed.time_partitioning[0].type == "DAY" &&
      google_bigquery_table.committed.time_partitioning[0].field == "event_time" &&
      google_bigquery_table.committed.time_partitioning[0].expiration_ms == 30 * 86400000
    )
    error_message = "Tables are partitioned by DAY on event_time with the category's partition expiration."
  }
  assert {
    condition     = google_bigquery_table.committed.clustering == tolist(["campaign_id", "event_id"])
    error_message = "Clustering must come from the category."
  }
}

run "bytes_category_without_expiration" {
  command = plan
  module {
    source = "./modules/bigquery_category"
  }
  variables {
    category = {
      name                      = "trace_span"
      description               = ""
      payload_format            = "bytes"
      fields                    = []
      clustering                = ["event_id"]
      partition_expiration_days = null
    }
  }

  assert {
    condition     = [for c in jsondecode(google_bigquery_table.committed.schema) : c.type if c.name == "payload"] == ["BYTES"]
    error_message = "A bytes category stores its payload as BYTES."
  }
  assert {
    condition     = length(jsondecode(google_bigquery_table.committed.schema)) == 8
    error_message = "A category without fields has exactly the 8 fixed columns."
  }
  assert {
    condition     = google_bigquery_table.committed.time_partitioning[0].type == "DAY" && google_bigquery_table.committed.time_partitioning[0].field == "event_time"
    error_message = "Every table is partitioned by DAY on event_time."
  }
}

run "fresh_table_per_tier" {
  command = plan
  module {
    source = "./modules/bigquery_fresh"
  }
  variables {
    tier          = "bulk-eu"
    horizon_hours = 48
  }

  assert {
    condition     = google_bigquery_table.fresh.table_id == "_fresh_bulk_eu"
    error_message = "The fresh table is _fresh_<tier> with - replaced by _."
  }
  assert {
    condition     = google_bigquery_table.fresh.time_partitioning[0].field == "event_time" && google_bigquery_table.fresh.time_partitioning[0].expiration_ms == 3 * 86400000
    error_message = "Fresh partitions (DAY on event_time) expire one day after the horizon."
  }
  assert {
    condition     = google_bigquery_table.fresh.clustering == tolist(["category", "event_id"])
    error_message = "The fresh table is clustered by category, event_id."
  }
}

# modules/bigquery_category: the table's schema, partitioning and clustering come from the category definition.

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
      { name = "campaign_id", type = "STRING", description = "" },
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
    condition     = google_bigquery_table.events.table_id == "ads_click" && google_bigquery_table.events.dataset_id == "logpipe"
    error_message = "The table is named after the category, in the catalog's dataset."
  }
  assert {
    condition = [for c in jsondecode(google_bigquery_table.events.schema) : "${c.name}:${c.type}:${c.mode}"] == [
      "event_id:STRING:REQUIRED", "event_time:TIMESTAMP:REQUIRED", "ingest_time:TIMESTAMP:NULLABLE",
      "payload:JSON:NULLABLE", "attributes:JSON:NULLABLE", "producer:STRING:NULLABLE", "client_id:STRING:NULLABLE",
      "envelope_id:STRING:NULLABLE", "campaign_id:STRING:NULLABLE", "cost_micros:INT64:NULLABLE",
    ]
    error_message = "Schema must be the fixed columns followed by one NULLABLE column per category field."
  }
  assert {
    condition = (
      google_bigquery_table.events.time_partitioning[0].type == "DAY" &&
      google_bigquery_table.events.time_partitioning[0].field == "event_time" &&
      google_bigquery_table.events.time_partitioning[0].expiration_ms == 30 * 86400000
    )
    error_message = "Tables are partitioned by DAY on event_time with the category's partition expiration."
  }
  assert {
    condition     = google_bigquery_table.events.clustering == tolist(["campaign_id", "event_id"])
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
    condition     = [for c in jsondecode(google_bigquery_table.events.schema) : c.type if c.name == "payload"] == ["BYTES"]
    error_message = "A bytes category stores its payload as BYTES."
  }
  assert {
    condition     = length(jsondecode(google_bigquery_table.events.schema)) == 8
    error_message = "A category without fields has exactly the 8 fixed columns."
  }
  assert {
    condition     = google_bigquery_table.events.time_partitioning[0].type == "DAY" && google_bigquery_table.events.time_partitioning[0].field == "event_time"
    error_message = "Every table is partitioned by DAY on event_time."
  }
}

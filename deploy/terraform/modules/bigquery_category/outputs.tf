output "table_id" {
  description = "The category's committed table (<category>__committed)."
  value       = google_bigquery_table.committed.table_id
}

output "view_id" {
  description = "The view users query, named after the category; `logpipe load` creates it (its SQL lives in replicator/bigquery/views.py)."
  value       = var.category.name
}

output "table_id" {
  description = "Table users query for this category (today the table itself; later possibly a view)."
  value       = google_bigquery_table.events.table_id
}

output "columns" {
  description = "The table's columns as planned: name, type and mode, in order."
  value       = [for c in local.columns : { name = c.name, type = c.type, mode = c.mode }]
}

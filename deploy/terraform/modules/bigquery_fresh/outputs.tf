output "table_id" {
  description = "The tier's fresh table (_fresh_<tier>)."
  value       = google_bigquery_table.fresh.table_id
}

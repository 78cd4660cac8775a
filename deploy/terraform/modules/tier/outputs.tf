output "topic" {
  description = "Name of the tier's topic (front-ends publish here)."
  value       = google_pubsub_topic.main.name
}

output "subscription" {
  description = "Name of the replicator's subscription on the tier's topic."
  value       = google_pubsub_subscription.main.name
}

output "dead_letter_topic" {
  description = "Name of the tier's dead-letter topic (Pub/Sub and the replicator send poison messages here)."
  value       = google_pubsub_topic.dead_letter.name
}

output "dead_letter_subscription" {
  description = "Name of the subscription that keeps dead-lettered messages for inspection."
  value       = google_pubsub_subscription.dead_letter.name
}

output "replicator_service_account" {
  description = "Email of the tier's replicator service account."
  value       = google_service_account.replicator.email
}

output "loader_service_account" {
  description = "Email of the tier's BigQuery loader service account."
  value       = google_service_account.loader.email
}

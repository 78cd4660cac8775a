# One tier: a topic, its replicator subscription (exactly-once, dead-lettering), the dead-letter topic with its own
# subscription, the tier's two service accounts (replicator, BigQuery loader) and every IAM grant on these Pub/Sub
# resources. The bucket and dataset grants are in storage.tf and bigquery.tf.
# Names follow service/catalog.py (Catalog.topic / subscription / dead_letter_topic / dead_letter_subscription).

locals {
  topic_name                    = "${var.name_prefix}-${var.tier.name}"
  subscription_name             = "${var.name_prefix}-${var.tier.name}-replicator"
  dead_letter_topic_name        = "${var.name_prefix}-${var.tier.name}-dead-letter"
  dead_letter_subscription_name = "${var.name_prefix}-${var.tier.name}-dead-letter-sub"
  replicator_account_id         = "${var.name_prefix}-rep-${var.tier.name}"
  loader_account_id             = "${var.name_prefix}-load-${var.tier.name}"

  pubsub_service_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  replicator_member    = "serviceAccount:${google_service_account.replicator.email}"
  labels               = merge(var.labels, { logpipe_tier = var.tier.name })
}

resource "google_pubsub_topic" "main" {
  project = var.project_id
  name    = local.topic_name
  labels  = local.labels
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = local.dead_letter_topic_name
  labels  = local.labels
}

resource "google_pubsub_subscription" "main" {
  project                      = var.project_id
  name                         = local.subscription_name
  topic                        = google_pubsub_topic.main.id
  labels                       = local.labels
  ack_deadline_seconds         = var.tier.ack_deadline_seconds
  message_retention_duration   = "${var.tier.message_retention_seconds}s"
  retain_acked_messages        = false
  enable_exactly_once_delivery = true

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.tier.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  # Never expire for inactivity: a paused replicator must not lose its backlog.
  expiration_policy {
    ttl = ""
  }
}

# Holds dead-lettered messages for inspection and replay. It has no dead-letter policy of its own on purpose:
# nothing consumes it automatically, so there is no delivery loop to break.
resource "google_pubsub_subscription" "dead_letter" {
  project                      = var.project_id
  name                         = local.dead_letter_subscription_name
  topic                        = google_pubsub_topic.dead_letter.id
  labels                       = local.labels
  ack_deadline_seconds         = 60
  message_retention_duration   = "${var.dead_letter_retention_seconds}s"
  enable_exactly_once_delivery = true

  expiration_policy {
    ttl = ""
  }
}

resource "google_service_account" "replicator" {
  project      = var.project_id
  account_id   = local.replicator_account_id
  display_name = "logpipe replicator (${var.tier.name})"
  description  = "Runs the logpipe replicator of tier ${var.tier.name}: pulls ${local.subscription_name}, writes the landing bucket."

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", local.replicator_account_id))
      error_message = "Service account id \"${local.replicator_account_id}\" must be 6-30 characters of [a-z0-9-]; shorten name_prefix or the tier name in the catalog."
    }
  }
}

# The BigQuery loader (`logpipe load`) has its own identity: it needs BigQuery, the replicator does not; neither needs
# the other's Pub/Sub grants.
resource "google_service_account" "loader" {
  project      = var.project_id
  account_id   = local.loader_account_id
  display_name = "logpipe loader (${var.tier.name})"
  description  = "Runs the logpipe BigQuery loader of tier ${var.tier.name}: reads the landing bucket, loads the dataset."

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", local.loader_account_id))
      error_message = "Service account id \"${local.loader_account_id}\" must be 6-30 characters of [a-z0-9-]; shorten name_prefix or the tier name in the catalog."
    }
  }
}

# --- Pub/Sub's service agent may dead-letter: publish to the DLQ topic and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "agent_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.main.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- Front-ends publish to this tier's topic only.
resource "google_pubsub_topic_iam_member" "frontend_publisher" {
  for_each = var.publisher_members

  project = var.project_id
  topic   = google_pubsub_topic.main.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# --- The replicator pulls its subscription and publishes poison envelopes (with a reason attribute) to the DLQ.
resource "google_pubsub_subscription_iam_member" "replicator_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.main.name
  role         = "roles/pubsub.subscriber"
  member       = local.replicator_member
}

# At start-up the replicator reads its subscription (get_subscription, for enable_exactly_once_delivery:
# replicator/worker.py). That needs pubsub.subscriptions.get, which roles/pubsub.subscriber does not include.
resource "google_pubsub_subscription_iam_member" "replicator_viewer" {
  project      = var.project_id
  subscription = google_pubsub_subscription.main.name
  role         = "roles/pubsub.viewer"
  member       = local.replicator_member
}

resource "google_pubsub_topic_iam_member" "replicator_dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.replicator_member
}

# Alerts per tier: backlog age, dead-lettered messages, replicator errors and failing finalization.
# - Backlog: pubsub subscription/oldest_unacked_message_age on the replicator subscription.
# - Dead letters: topic/send_message_operation_count on the tier's dead-letter topic. It counts both paths into the
#   DLQ (Pub/Sub forwarding after max_delivery_attempts, and the replicator publishing poison envelopes itself),
#   whereas subscription/dead_letter_message_count sees only the first.
# - Errors: a log-based metric over the replicator and loader pods' ERROR log entries. It needs nothing from logpipe
#   beyond logging to stderr, which GKE ships to Cloud Logging (docs/deploy.md explains the choice). The deployments
#   set LOGPIPE_LOG_FORMAT=json (runtime.tf), so each line is JSON with a `severity` field and Cloud Logging keeps the
#   level; GKE would mark plain-text stderr lines ERROR, and `severity>=ERROR` would count every INFO line.
# - Finalization: a log-based metric over the finalizer's error lines (`finalize <category> <hour> failed` from
#   replicator.finalize, `finalizer pass failed` from replicator.worker). Staging objects are deleted after
#   staging_retention_days, committed or not, so finalization that keeps failing will lose acked events.

locals {
  alert_documentation = "logpipe runbook: docs/deploy.md#alerts. Tier topics, subscriptions and DLQs are named after the catalog (catalog.yaml)."
}

resource "google_logging_metric" "replicator_errors" {
  project     = var.project_id
  name        = "${local.name_prefix}/replicator_errors"
  description = "ERROR (or worse) log entries of logpipe replicator and loader pods, by tier."
  filter      = "resource.type=\"k8s_container\" AND resource.labels.namespace_name=\"${var.kubernetes_namespace}\" AND labels.\"k8s-pod/app\"=(\"logpipe-replicator\" OR \"logpipe-loader\") AND severity>=ERROR"
  label_extractors = {
    tier = "EXTRACT(labels.\"k8s-pod/logpipe_tier\")"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "tier"
      value_type  = "STRING"
      description = "logpipe tier of the replicator that logged the error."
    }
  }
}

resource "google_logging_metric" "finalize_failures" {
  project     = var.project_id
  name        = "${local.name_prefix}/finalize_failures"
  description = "Failed finalizations (of one partition, or of a whole pass) logged by logpipe replicator pods, by tier."
  filter      = "resource.type=\"k8s_container\" AND resource.labels.namespace_name=\"${var.kubernetes_namespace}\" AND labels.\"k8s-pod/app\"=\"logpipe-replicator\" AND severity>=ERROR AND (jsonPayload.logger=\"replicator.finalize\" OR jsonPayload.msg:\"finalizer pass failed\")"
  label_extractors = {
    tier = "EXTRACT(labels.\"k8s-pod/logpipe_tier\")"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "tier"
      value_type  = "STRING"
      description = "logpipe tier of the replicator that logged the failure."
    }
  }
}

resource "google_monitoring_alert_policy" "oldest_unacked" {
  for_each = local.tiers

  project               = var.project_id
  display_name          = "logpipe ${each.key}: oldest unacked message older than ${var.oldest_unacked_age_threshold_seconds}s"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = var.notification_channels
  user_labels           = merge(local.labels, { logpipe_tier = each.key })

  conditions {
    display_name = "oldest_unacked_message_age > ${var.oldest_unacked_age_threshold_seconds}s on ${module.tier[each.key].subscription}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${module.tier[each.key].subscription}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_unacked_age_threshold_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Replicators of tier ${each.key} are behind or stuck. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  for_each = local.tiers

  project               = var.project_id
  display_name          = "logpipe ${each.key}: messages dead-lettered"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = merge(local.labels, { logpipe_tier = each.key })

  conditions {
    display_name = "messages published to ${module.tier[each.key].dead_letter_topic}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND resource.labels.topic_id = \"${module.tier[each.key].dead_letter_topic}\" AND metric.type = \"pubsub.googleapis.com/topic/send_message_operation_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Poison messages of tier ${each.key} reached ${module.tier[each.key].dead_letter_topic}; inspect ${module.tier[each.key].dead_letter_subscription} (each carries a reason attribute). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

resource "google_monitoring_alert_policy" "replicator_errors" {
  for_each = local.tiers

  project               = var.project_id
  display_name          = "logpipe ${each.key}: replicator errors"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = var.notification_channels
  user_labels           = merge(local.labels, { logpipe_tier = each.key })

  conditions {
    display_name = "replicator ERROR log entries > ${var.replicator_error_threshold} in 5 min"
    condition_threshold {
      filter          = "resource.type = \"k8s_container\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.replicator_errors.name}\" AND metric.labels.tier = \"${each.key}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.replicator_error_threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Replicators of tier ${each.key} log errors. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

# Finalizers run every 30 s or so and log each failure, so a failure in every 5-minute window for an hour means
# finalization is stuck, not a blip. Staging objects are deleted after staging_retention_days whether or not they
# were committed: this alert is the reminder to repair finalization before then.
resource "google_monitoring_alert_policy" "finalize_failing" {
  for_each = local.tiers

  project               = var.project_id
  display_name          = "logpipe ${each.key}: finalization failing for 1 h"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = var.notification_channels
  user_labels           = merge(local.labels, { logpipe_tier = each.key })

  conditions {
    display_name = "finalizer failures in every 5 min for 1 h"
    condition_threshold {
      filter          = "resource.type = \"k8s_container\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.finalize_failures.name}\" AND metric.labels.tier = \"${each.key}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "3600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Finalization of tier ${each.key} has failed for an hour (pod logs: `finalize ... failed`, `finalizer pass failed`). Landed events wait in staging/ and are deleted ${var.staging_retention_days} days after landing whether or not they were committed: repair before then. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  alert_strategy {
    auto_close = "1800s"
  }
}

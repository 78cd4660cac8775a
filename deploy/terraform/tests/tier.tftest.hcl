# modules/tier, planned through mock providers: the subscription guarantees, dead-lettering and the Pub/Sub IAM.

mock_provider "google" {
  mock_resource "google_service_account" {
    defaults = {
      email = "logpipe-rep-core@my-proj-123.iam.gserviceaccount.com"
    }
  }
}

variables {
  project_id     = "my-proj-123"
  project_number = "123456789012"
  name_prefix    = "logpipe"
  tier = {
    name                      = "core"
    ack_deadline_seconds      = 60
    max_delivery_attempts     = 10
    message_retention_seconds = 604800
  }
  publisher_members             = { frontend = "serviceAccount:logpipe-frontend@my-proj-123.iam.gserviceaccount.com" }
  retry_minimum_backoff         = "10s"
  retry_maximum_backoff         = "600s"
  dead_letter_retention_seconds = 604800
  labels                        = { app = "logpipe" }
}

run "names_follow_service_catalog" {
  command = apply
  module {
    source = "./modules/tier"
  }

  assert {
    condition     = google_pubsub_topic.main.name == "logpipe-core" && google_pubsub_subscription.main.name == "logpipe-core-replicator"
    error_message = "Topic/subscription names must be <prefix>-<tier> and <prefix>-<tier>-replicator."
  }
  assert {
    condition     = google_pubsub_topic.dead_letter.name == "logpipe-core-dead-letter" && google_pubsub_subscription.dead_letter.name == "logpipe-core-dead-letter-sub"
    error_message = "Dead-letter names must be <prefix>-<tier>-dead-letter and <prefix>-<tier>-dead-letter-sub."
  }
}

run "subscription_is_exactly_once_with_dead_letter_and_retry" {
  command = apply
  module {
    source = "./modules/tier"
  }

  assert {
    condition     = google_pubsub_subscription.main.enable_exactly_once_delivery == true
    error_message = "The replicator subscription must have exactly-once delivery."
  }
  assert {
    condition     = google_pubsub_subscription.main.topic == google_pubsub_topic.main.id
    error_message = "The replicator subscription must read the tier topic."
  }
  assert {
    condition     = google_pubsub_subscription.main.dead_letter_policy[0].dead_letter_topic == google_pubsub_topic.dead_letter.id
    error_message = "The replicator subscription must dead-letter to the tier's dead-letter topic."
  }
  assert {
    condition     = google_pubsub_subscription.main.dead_letter_policy[0].max_delivery_attempts == 10
    error_message = "max_delivery_attempts must come from the catalog tier."
  }
  assert {
    condition     = google_pubsub_subscription.main.ack_deadline_seconds == 60 && google_pubsub_subscription.main.message_retention_duration == "604800s"
    error_message = "Ack deadline and retention must come from the catalog tier."
  }
  assert {
    condition     = google_pubsub_subscription.main.retry_policy[0].minimum_backoff == "10s" && google_pubsub_subscription.main.retry_policy[0].maximum_backoff == "600s"
    error_message = "The retry policy must use the configured backoffs."
  }
  assert {
    condition     = google_pubsub_subscription.main.expiration_policy[0].ttl == ""
    error_message = "The replicator subscription must never expire."
  }
  assert {
    condition     = google_pubsub_subscription.dead_letter.topic == google_pubsub_topic.dead_letter.id
    error_message = "The dead-letter subscription must read the dead-letter topic."
  }
}

run "pubsub_service_agent_can_dead_letter" {
  command = apply
  module {
    source = "./modules/tier"
  }

  assert {
    condition = (
      google_pubsub_topic_iam_member.agent_dead_letter_publisher.topic == google_pubsub_topic.dead_letter.name &&
      google_pubsub_topic_iam_member.agent_dead_letter_publisher.role == "roles/pubsub.publisher" &&
      google_pubsub_topic_iam_member.agent_dead_letter_publisher.member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    error_message = "Pub/Sub's service agent must be publisher on the dead-letter topic."
  }
  assert {
    condition = (
      google_pubsub_subscription_iam_member.agent_subscriber.subscription == google_pubsub_subscription.main.name &&
      google_pubsub_subscription_iam_member.agent_subscriber.role == "roles/pubsub.subscriber" &&
      google_pubsub_subscription_iam_member.agent_subscriber.member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    error_message = "Pub/Sub's service agent must be subscriber on the source subscription."
  }
}

run "identities_get_least_privilege" {
  command = apply
  module {
    source = "./modules/tier"
  }

  assert {
    condition = (
      length(google_pubsub_topic_iam_member.frontend_publisher) == 1 &&
      google_pubsub_topic_iam_member.frontend_publisher["frontend"].member == "serviceAccount:logpipe-frontend@my-proj-123.iam.gserviceaccount.com" &&
      google_pubsub_topic_iam_member.frontend_publisher["frontend"].role == "roles/pubsub.publisher" &&
      google_pubsub_topic_iam_member.frontend_publisher["frontend"].topic == google_pubsub_topic.main.name
    )
    error_message = "Front-ends must be publishers on the tier topic and nothing else."
  }
  assert {
    condition = (
      google_pubsub_subscription_iam_member.replicator_subscriber.member == "serviceAccount:logpipe-rep-core@my-proj-123.iam.gserviceaccount.com" &&
      google_pubsub_subscription_iam_member.replicator_subscriber.role == "roles/pubsub.subscriber" &&
      google_pubsub_subscription_iam_member.replicator_subscriber.subscription == google_pubsub_subscription.main.name
    )
    error_message = "The tier's replicator must be subscriber on its subscription."
  }
  assert {
    condition = (
      google_pubsub_subscription_iam_member.replicator_viewer.member == "serviceAccount:logpipe-rep-core@my-proj-123.iam.gserviceaccount.com" &&
      google_pubsub_subscription_iam_member.replicator_viewer.role == "roles/pubsub.viewer" &&
      google_pubsub_subscription_iam_member.replicator_viewer.subscription == google_pubsub_subscription.main.name
    )
    error_message = "The tier's replicator must be able to read its subscription (get_subscription at start-up needs pubsub.subscriptions.get)."
  }
  assert {
    condition = (
      google_pubsub_topic_iam_member.replicator_dead_letter_publisher.member == "serviceAccount:logpipe-rep-core@my-proj-123.iam.gserviceaccount.com" &&
      google_pubsub_topic_iam_member.replicator_dead_letter_publisher.topic == google_pubsub_topic.dead_letter.name
    )
    error_message = "The tier's replicator must be able to publish poison envelopes to the dead-letter topic."
  }
  assert {
    condition     = google_service_account.replicator.account_id == "logpipe-rep-core" && google_service_account.loader.account_id == "logpipe-load-core"
    error_message = "The service account ids must be <prefix>-rep-<tier> and <prefix>-load-<tier>."
  }
}

run "long_names_are_refused_with_a_clear_message" {
  command = plan
  module {
    source = "./modules/tier"
  }
  variables {
    name_prefix = "logpipe-production-eu"
    tier = {
      name                      = "diagnostics-bulk"
      ack_deadline_seconds      = 60
      max_delivery_attempts     = 10
      message_retention_seconds = 604800
    }
  }
  expect_failures = [google_service_account.replicator, google_service_account.loader]
}

run "a_loader_id_one_character_too_long_is_refused" {
  command = plan
  module {
    source = "./modules/tier"
  }
  variables {
    # logpipe-rep-<18> is 30 characters (fine), logpipe-load-<18> is 31.
    tier = {
      name                      = "diagnostics-bulk-x"
      ack_deadline_seconds      = 60
      max_delivery_attempts     = 10
      message_retention_seconds = 604800
    }
  }
  expect_failures = [google_service_account.loader]
}

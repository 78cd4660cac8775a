variable "project_id" {
  description = "Google Cloud project that holds the tier's Pub/Sub resources and its replicator service account."
  type        = string
}

variable "project_number" {
  description = "Numeric project id; names Pub/Sub's service agent (service-NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com)."
  type        = string
}

variable "name_prefix" {
  description = "The catalog's name_prefix; every resource name starts with it (see service/catalog.py)."
  type        = string
}

variable "tier" {
  description = "One tier of the catalog, with the defaults of service/catalog.py already applied."
  type = object({
    name                      = string
    ack_deadline_seconds      = number
    max_delivery_attempts     = number
    message_retention_seconds = number
  })
}

variable "publisher_members" {
  description = "IAM members allowed to publish to this tier's topic (the front-ends), keyed by a static name so plans know the keys."
  type        = map(string)
}

variable "retry_minimum_backoff" {
  description = "Shortest redelivery delay after a nack or an expired ack deadline (duration string, e.g. \"10s\")."
  type        = string
}

variable "retry_maximum_backoff" {
  description = "Longest redelivery delay after a nack or an expired ack deadline (duration string, at most \"600s\")."
  type        = string
}

variable "dead_letter_retention_seconds" {
  description = "How long dead-lettered messages stay in the dead-letter subscription for inspection and replay."
  type        = number
}

variable "labels" {
  description = "Labels put on every labelable resource of the tier."
  type        = map(string)
}

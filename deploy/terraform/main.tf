# logpipe in one Google Cloud project. Everything per tier and per category is derived from the catalog
# (catalog.yaml, the same file logpipe itself reads); the rules below mirror service/catalog.py.

locals {
  catalog_file = coalesce(var.catalog_file, "${path.module}/catalog.yaml")
  catalog_raw  = yamldecode(file(local.catalog_file))

  name_prefix = try(local.catalog_raw.name_prefix, "logpipe")
  dataset_id  = try(local.catalog_raw.dataset, "logpipe")

  # Defaults as in service/catalog.py (Tier, Category); a pytest compares the planned result with Python's.
  tiers = {
    for t in local.catalog_raw.tiers : t.name => {
      name                      = t.name
      ack_deadline_seconds      = try(t.ack_deadline_seconds, 60)
      max_delivery_attempts     = try(t.max_delivery_attempts, 100)
      message_retention_seconds = try(t.message_retention_seconds, 604800)
    }
  }
  categories = {
    for c in local.catalog_raw.categories : c.name => {
      name                      = c.name
      tier                      = c.tier
      description               = try(c.description, "")
      payload_format            = try(c.payload_format, "json")
      fields                    = [for f in try(c.fields, []) : { name = f.name, type = f.type, description = try(f.description, "") }]
      clustering                = try(c.clustering, ["event_id"])
      partition_expiration_days = try(c.partition_expiration_days, null)
    }
  }

  labels = merge(var.labels, { app = "logpipe" })

  bucket_name      = coalesce(var.bucket_name, "${var.project_id}-${local.name_prefix}-landing")
  bucket_location  = coalesce(var.bucket_location, var.region)
  dataset_location = coalesce(var.dataset_location, var.region)
}

data "google_project" "this" {
  project_id = var.project_id
}

check "catalog_is_consistent" {
  assert {
    condition     = alltrue([for c in local.categories : contains(keys(local.tiers), c.tier)])
    error_message = "Every category in ${local.catalog_file} must name a tier defined there."
  }
}

# --- Pub/Sub: one module per tier ---------------------------------------------------------------------------------
module "tier" {
  source   = "./modules/tier"
  for_each = local.tiers

  project_id                    = var.project_id
  project_number                = data.google_project.this.number
  name_prefix                   = local.name_prefix
  tier                          = each.value
  publisher_members             = { frontend = google_service_account.frontend.member }
  retry_minimum_backoff         = var.retry_minimum_backoff
  retry_maximum_backoff         = var.retry_maximum_backoff
  dead_letter_retention_seconds = var.dead_letter_retention_seconds
  labels                        = local.labels
}

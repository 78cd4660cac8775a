# The dataset and the tables the loader (`logpipe load`, replicator/bigquery) works with:
#   per category  <category>__committed (module bigquery_category), and the view <category> that users query, which
#                 `logpipe load` creates because its SQL lives in replicator/bigquery/views.py;
#   per tier      _fresh_<tier> (module bigquery_fresh), rows not yet committed.
# The loader creates any of these that are missing and appends new NULLABLE columns, with the same rules.

resource "google_bigquery_dataset" "logs" {
  project                    = var.project_id
  dataset_id                 = local.dataset_id
  location                   = local.dataset_location
  friendly_name              = "logpipe events"
  description                = "Events landed by logpipe; one table per catalog category."
  labels                     = local.labels
  delete_contents_on_destroy = false
}

module "bigquery_category" {
  source   = "./modules/bigquery_category"
  for_each = local.categories

  project_id          = var.project_id
  dataset_id          = google_bigquery_dataset.logs.dataset_id
  category            = each.value
  deletion_protection = var.table_deletion_protection
  labels              = local.labels
}

module "bigquery_fresh" {
  source = "./modules/bigquery_fresh"
  # Like the loader: only tiers that have categories get a fresh table.
  for_each = toset(distinct([for c in local.categories : c.tier]))

  project_id          = var.project_id
  dataset_id          = google_bigquery_dataset.logs.dataset_id
  tier                = each.key
  horizon_hours       = var.bigquery_fresh_horizon_hours
  deletion_protection = var.table_deletion_protection
  labels              = local.labels
}

# Only the loaders (`logpipe load`, one service account per tier) touch BigQuery; the replicators never do. A loader
# creates and evolves the tables and views of this dataset, loads into them and deletes superseded fresh rows.
resource "google_bigquery_dataset_iam_member" "loader_data_editor" {
  for_each = local.tiers

  project    = var.project_id
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${module.tier[each.key].loader_service_account}"
}

# The one project-level grant for logpipe itself: BigQuery jobs (loads, queries) run in a project, so
# roles/bigquery.jobUser cannot be narrower. It lets the loader run jobs, not read any data: data access still
# needs the dataset-level dataEditor above.
resource "google_project_iam_member" "loader_job_user" {
  for_each = local.tiers

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${module.tier[each.key].loader_service_account}"
}

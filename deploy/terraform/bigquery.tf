# The dataset and one table (module bigquery_category) per catalog category. The table layout lives in the module so
# that the loading design (issue 5) can add helper tables/views in one place.

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

# Replicators load and MERGE into the tables of this dataset only.
resource "google_bigquery_dataset_iam_member" "replicator_data_editor" {
  for_each = local.tiers

  project    = var.project_id
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${module.tier[each.key].replicator_service_account}"
}

# The one project-level grant for logpipe itself: BigQuery jobs (loads, queries) run in a project, so
# roles/bigquery.jobUser cannot be narrower. It lets the replicator run jobs, not read any data: data access still
# needs the dataset-level dataEditor above.
resource "google_project_iam_member" "replicator_job_user" {
  for_each = local.tiers

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${module.tier[each.key].replicator_service_account}"
}

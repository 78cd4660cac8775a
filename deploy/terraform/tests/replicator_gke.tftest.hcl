# modules/replicator_gke: one deployment per tier, configured from the outputs, autoscaled on subscription backlog.

mock_provider "google" {}
mock_provider "kubernetes" {}

variables {
  project_id                       = "my-proj-123"
  tier                             = "core"
  namespace                        = "logpipe"
  image                            = "europe-docker.pkg.dev/my-proj-123/logpipe/logpipe:0.1.0"
  command                          = ["logpipe", "replicate"]
  loader_command                   = ["logpipe", "load", "--horizon-hours", "48"]
  service_account_email            = "logpipe-rep-core@my-proj-123.iam.gserviceaccount.com"
  service_account_name             = "projects/my-proj-123/serviceAccounts/logpipe-rep-core@my-proj-123.iam.gserviceaccount.com"
  loader_service_account_email     = "logpipe-load-core@my-proj-123.iam.gserviceaccount.com"
  loader_service_account_name      = "projects/my-proj-123/serviceAccounts/logpipe-load-core@my-proj-123.iam.gserviceaccount.com"
  env                              = { GOOGLE_CLOUD_PROJECT = "my-proj-123", LOGPIPE_BUCKET = "b", LOGPIPE_DATASET = "logpipe", LOGPIPE_CATALOG = "/etc/logpipe/catalog.yaml", LOGPIPE_LOG_FORMAT = "json" }
  subscription                     = "logpipe-core-replicator"
  catalog_config_map               = "logpipe-catalog"
  catalog_mount_path               = "/etc/logpipe"
  min_replicas                     = 1
  max_replicas                     = 10
  backlog_per_replica              = 500
  cpu                              = "1"
  memory                           = "2Gi"
  scratch_size                     = "1Gi"
  termination_grace_period_seconds = 90
}

run "deployment_and_backlog_autoscaler" {
  command = plan
  module {
    source = "./modules/replicator_gke"
  }

  assert {
    condition = (
      kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].container[0].command == tolist(["logpipe"]) &&
      kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].container[0].args == tolist(["replicate", "--tier", "core"])
    )
    error_message = "The container runs `logpipe replicate --tier <tier>` as command + args, whatever the image's ENTRYPOINT."
  }
  assert {
    condition = alltrue([
      for d in [kubernetes_deployment_v1.replicator, kubernetes_deployment_v1.loader] :
      { for e in d.spec[0].template[0].spec[0].container[0].env : e.name => e.value } == {
        GOOGLE_CLOUD_PROJECT = "my-proj-123", LOGPIPE_BUCKET = "b", LOGPIPE_DATASET = "logpipe",
        LOGPIPE_CATALOG      = "/etc/logpipe/catalog.yaml", LOGPIPE_LOG_FORMAT = "json"
      }
    ])
    error_message = "Both containers get exactly the environment passed in (no LOGPIPE_TIER: --tier says it)."
  }
  assert {
    condition = (
      kubernetes_deployment_v1.loader.spec[0].template[0].spec[0].container[0].command == tolist(["logpipe"]) &&
      kubernetes_deployment_v1.loader.spec[0].template[0].spec[0].container[0].args == tolist(["load", "--horizon-hours", "48", "--tier", "core"]) &&
      kubernetes_deployment_v1.loader.spec[0].replicas == "1"
    )
    error_message = "One loader pod per tier runs `logpipe load --tier <tier>` as command + args."
  }
  assert {
    condition = (
      kubernetes_deployment_v1.loader.spec[0].template[0].spec[0].service_account_name == "logpipe-loader-core" &&
      kubernetes_service_account_v1.loader.metadata[0].annotations["iam.gke.io/gcp-service-account"] == "logpipe-load-core@my-proj-123.iam.gserviceaccount.com" &&
      kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].service_account_name == "logpipe-replicator-core" &&
      kubernetes_service_account_v1.replicator.metadata[0].annotations["iam.gke.io/gcp-service-account"] == "logpipe-rep-core@my-proj-123.iam.gserviceaccount.com"
    )
    error_message = "The loader and the replicator run under their own Kubernetes service accounts, each mapped to its own Google service account."
  }
  assert {
    condition     = kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].container[0].image == var.image
    error_message = "The image is the variable."
  }
  assert {
    condition = (
      kubernetes_horizontal_pod_autoscaler_v2.replicator.spec[0].metric[0].type == "External" &&
      kubernetes_horizontal_pod_autoscaler_v2.replicator.spec[0].metric[0].external[0].metric[0].name == "pubsub.googleapis.com|subscription|num_undelivered_messages" &&
      kubernetes_horizontal_pod_autoscaler_v2.replicator.spec[0].metric[0].external[0].metric[0].selector[0].match_labels["resource.labels.subscription_id"] == "logpipe-core-replicator" &&
      kubernetes_horizontal_pod_autoscaler_v2.replicator.spec[0].metric[0].external[0].target[0].average_value == "500"
    )
    error_message = "The HPA scales on the tier subscription's undelivered messages."
  }
  assert {
    condition     = kubernetes_horizontal_pod_autoscaler_v2.replicator.spec[0].scale_target_ref[0].name == "logpipe-replicator-core"
    error_message = "The HPA scales the tier's deployment."
  }
  assert {
    condition     = google_service_account_iam_member.workload_identity.member == "serviceAccount:my-proj-123.svc.id.goog[logpipe/logpipe-replicator-core]" && google_service_account_iam_member.workload_identity.role == "roles/iam.workloadIdentityUser"
    error_message = "Only the tier's Kubernetes service account may act as the tier's Google service account."
  }
  assert {
    condition = (
      google_service_account_iam_member.loader_workload_identity.member == "serviceAccount:my-proj-123.svc.id.goog[logpipe/logpipe-loader-core]" &&
      google_service_account_iam_member.loader_workload_identity.role == "roles/iam.workloadIdentityUser" &&
      google_service_account_iam_member.loader_workload_identity.service_account_id == var.loader_service_account_name
    )
    error_message = "Only the loader's Kubernetes service account may act as the loader's Google service account."
  }
}

run "a_custom_command_line_is_split_into_command_and_args" {
  command = plan
  module {
    source = "./modules/replicator_gke"
  }
  variables {
    command = ["/usr/local/bin/logpipe", "replicate", "--threads", "16"]
  }

  assert {
    condition = (
      kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].container[0].command == tolist(["/usr/local/bin/logpipe"]) &&
      kubernetes_deployment_v1.replicator.spec[0].template[0].spec[0].container[0].args == tolist(["replicate", "--threads", "16", "--tier", "core"])
    )
    error_message = "The first element is the command, the rest (then --tier) the args."
  }
}

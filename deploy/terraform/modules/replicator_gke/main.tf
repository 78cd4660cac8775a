# The replicator of one tier on GKE: a Deployment of identical streaming-pull workers (`logpipe replicate`) with an
# HPA that scales them on the subscription's backlog (external metric
# pubsub.googleapis.com|subscription|num_undelivered_messages), and a one-pod Deployment of the BigQuery loader
# (`logpipe load`, safe to run on many workers, so a rollout that briefly runs two is harmless). Each runs under its
# own Kubernetes service account, bound through Workload Identity to its own Google service account.
#
# Containers set `command` (the first element of var.command / var.loader_command) as well as `args`, so the image's
# ENTRYPOINT never matters: the image only needs `logpipe` on PATH.

locals {
  name          = "logpipe-replicator-${var.tier}"
  labels        = { app = "logpipe-replicator", logpipe_tier = var.tier }
  loader_name   = "logpipe-loader-${var.tier}"
  loader_labels = { app = "logpipe-loader", logpipe_tier = var.tier }
}

resource "kubernetes_service_account_v1" "replicator" {
  metadata {
    name        = local.name
    namespace   = var.namespace
    labels      = local.labels
    annotations = { "iam.gke.io/gcp-service-account" = var.service_account_email }
  }
  automount_service_account_token = false
}

resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = var.service_account_name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/${local.name}]"
}

resource "kubernetes_service_account_v1" "loader" {
  metadata {
    name        = local.loader_name
    namespace   = var.namespace
    labels      = local.loader_labels
    annotations = { "iam.gke.io/gcp-service-account" = var.loader_service_account_email }
  }
  automount_service_account_token = false
}

resource "google_service_account_iam_member" "loader_workload_identity" {
  service_account_id = var.loader_service_account_name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/${local.loader_name}]"
}

resource "kubernetes_deployment_v1" "replicator" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    # The HPA owns the replica count; this is only the starting point.
    replicas = tostring(var.min_replicas)

    selector {
      match_labels = local.labels
    }

    template {
      metadata {
        labels = local.labels
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.replicator.metadata[0].name
        termination_grace_period_seconds = var.termination_grace_period_seconds

        container {
          name              = "replicator"
          image             = var.image
          image_pull_policy = "Always"
          command           = slice(var.command, 0, 1)
          args              = concat(slice(var.command, 1, length(var.command)), ["--tier", var.tier])

          dynamic "env" {
            for_each = var.env
            content {
              name  = env.key
              value = env.value
            }
          }

          resources {
            requests = { cpu = var.cpu, memory = var.memory }
            limits   = { cpu = var.cpu, memory = var.memory }
          }

          volume_mount {
            name       = "catalog"
            mount_path = var.catalog_mount_path
            read_only  = true
          }

          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }

          security_context {
            run_as_non_root            = true
            read_only_root_filesystem  = true
            allow_privilege_escalation = false
            capabilities {
              drop = ["ALL"]
            }
          }
        }

        volume {
          name = "catalog"
          config_map {
            name = var.catalog_config_map
          }
        }

        # The root filesystem is read-only; logpipe keeps its data in memory, /tmp is for libraries that want a temp file.
        volume {
          name = "tmp"
          empty_dir {
            size_limit = var.scratch_size
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [spec[0].replicas]
  }
}

resource "kubernetes_deployment_v1" "loader" {
  metadata {
    name      = local.loader_name
    namespace = var.namespace
    labels    = local.loader_labels
  }

  spec {
    replicas = "1"

    selector {
      match_labels = local.loader_labels
    }

    template {
      metadata {
        labels = local.loader_labels
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.loader.metadata[0].name
        termination_grace_period_seconds = 60

        container {
          name              = "loader"
          image             = var.image
          image_pull_policy = "Always"
          command           = slice(var.loader_command, 0, 1)
          args              = concat(slice(var.loader_command, 1, length(var.loader_command)), ["--tier", var.tier])

          dynamic "env" {
            for_each = var.env
            content {
              name  = env.key
              value = env.value
            }
          }

          resources {
            requests = { cpu = "250m", memory = "512Mi" }
            limits   = { cpu = "250m", memory = "512Mi" }
          }

          volume_mount {
            name       = "catalog"
            mount_path = var.catalog_mount_path
            read_only  = true
          }

          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }

          security_context {
            run_as_non_root            = true
            read_only_root_filesystem  = true
            allow_privilege_escalation = false
            capabilities {
              drop = ["ALL"]
            }
          }
        }

        volume {
          name = "catalog"
          config_map {
            name = var.catalog_config_map
          }
        }

        volume {
          name = "tmp"
          empty_dir {
            size_limit = "1Gi"
          }
        }
      }
    }
  }
}

resource "kubernetes_horizontal_pod_autoscaler_v2" "replicator" {
  metadata {
    name      = local.name
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    min_replicas = var.min_replicas
    max_replicas = var.max_replicas

    scale_target_ref {
      api_version = "apps/v1"
      kind        = "Deployment"
      name        = kubernetes_deployment_v1.replicator.metadata[0].name
    }

    metric {
      type = "External"
      external {
        metric {
          name = "pubsub.googleapis.com|subscription|num_undelivered_messages"
          selector {
            match_labels = { "resource.labels.subscription_id" = var.subscription }
          }
        }
        target {
          type          = "AverageValue"
          average_value = tostring(var.backlog_per_replica)
        }
      }
    }

    # Scale down slowly: a pod that leaves mid-envelope costs a redelivery, not data, but churn costs throughput.
    behavior {
      scale_down {
        stabilization_window_seconds = 300
        select_policy                = "Max"
        policy {
          type           = "Pods"
          value          = 1
          period_seconds = 60
        }
      }
    }
  }
}

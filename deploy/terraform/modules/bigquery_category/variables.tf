variable "project_id" {
  description = "Google Cloud project of the dataset."
  type        = string
}

variable "dataset_id" {
  description = "Dataset that holds the category's table (the catalog's dataset)."
  type        = string
}

variable "category" {
  description = "One category of the catalog, with the defaults of service/catalog.py already applied."
  type = object({
    name                      = string
    description               = string
    payload_format            = string
    fields                    = list(object({ name = string, type = string, description = string }))
    clustering                = list(string)
    partition_expiration_days = optional(number)
  })
}

variable "deletion_protection" {
  description = "Refuse to let Terraform delete the table (and its data)."
  type        = bool
}

variable "labels" {
  description = "Labels put on the table."
  type        = map(string)
}

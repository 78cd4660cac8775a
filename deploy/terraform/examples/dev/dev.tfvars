# Replace with your own values.
project_id       = "my-logpipe-dev"
replicator_image = "europe-docker.pkg.dev/my-logpipe-dev/logpipe/logpipe:0.1.0"

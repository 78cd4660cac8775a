# Replace with your own values.
project_id            = "my-logpipe-prod"
replicator_image      = "europe-docker.pkg.dev/my-logpipe-prod/logpipe/logpipe@sha256:0000000000000000000000000000000000000000000000000000000000000000"
notification_channels = ["projects/my-logpipe-prod/notificationChannels/1234567890"]
oidc_issuer_uri       = "https://sso.example.com"
frontend_subjects     = ["system:serviceaccount:logpipe:frontend"]

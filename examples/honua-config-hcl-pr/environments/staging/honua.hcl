# Honua Configuration 2.0 for `staging`, on top of environments/common/honua.hcl.
# Written by `honua convert --to hcl`; edit freely.

honua {
  environment = "staging"
  log_level   = "information"
  cors = {
    allowed_origins   = ["https://maps.staging.example.org"]
    allow_credentials = false
  }
}

data_source "city-postgis" {
  connection = "Host=staging-db.internal.example.org;Port=5432;Database=city_gis_staging;Username=honua;Password=${env:DB_PASSWORD};SslMode=Require;Minimum Pool Size=2;Maximum Pool Size=20"
}

service "ogc_api" {
  item_limit = 10000
}

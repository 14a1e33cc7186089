# Honua Configuration 2.0 for `production`, on top of environments/common/honua.hcl.
# Written by `honua convert --to hcl`; edit freely.

honua {
  environment = "production"
  log_level   = "warning"
  cors = {
    allowed_origins   = ["https://maps.example.org", "https://gis.example.org"]
    allow_credentials = true
  }
}

data_source "city-postgis" {
  connection = "Host=prod-db.internal.example.org;Port=5432;Database=city_gis;Username=honua;Password=${env:DB_PASSWORD};SslMode=Require;Minimum Pool Size=2;Maximum Pool Size=100"
}

service "ogc_api" {
  item_limit = 2000
}

# Not converted: written by hand after `honua convert` (the metadata had no rate limits, and Honua's
# validator warns when production has none).
rate_limit {
  enabled = true
  store   = "memory"
  rules = {
    default = {
      requests = 2000
      window   = "1m"
    }
  }
}

# Honua Configuration 2.0 for `development`, on top of environments/common/honua.hcl.
# Written by `honua convert --to hcl`; edit freely.

honua {
  environment = "development"
  log_level   = "debug"
  cors = {
    allowed_origins   = ["*"]
    allow_credentials = false
  }
}

data_source "city-postgis" {
  connection = "Host=localhost;Port=5432;Database=city_gis_dev;Username=honua;Password=${env:DB_PASSWORD};SslMode=Require;Minimum Pool Size=2;Maximum Pool Size=10"
}

service "ogc_api" {
  item_limit = 10000
}

# Honua Configuration 2.0 for every environment.
# Written by `honua convert --to hcl`; edit freely.

honua {
  version = "1.0"
}

data_source "city-postgis" {
  provider = "postgresql"
}

service "ogc_api" {
  enabled = true
}

service "wfs" {
  enabled = true
}

# (from environments/common/base-metadata.yaml)
# `catalog.ordering` pins each layer's Esri FeatureServer index: Honua sorts a service's layers by it,
# then by title, so without it a new layer whose title sorts first shifts the others (layer.reordered).
layer "parcels" {
  title             = "Property Parcels"
  data_source       = data_source.city-postgis
  table             = "cadastre.parcels"
  id_field          = "parcel_id"
  display_field     = "address"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    parcel_id = {
      type     = "string"
      nullable = false
    }
    address = {
      type     = "string"
      nullable = true
    }
    owner_name = {
      type     = "string"
      nullable = true
    }
    zoning_type = {
      type     = "string"
      nullable = true
    }
    area_sqft = {
      type     = "double"
      nullable = true
    }
    assessed_value = {
      type     = "double"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "zoning" {
  title             = "Zoning Districts"
  data_source       = data_source.city-postgis
  table             = "cadastre.zoning"
  id_field          = "zone_id"
  display_field     = "zone_code"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    zone_id = {
      type     = "int"
      nullable = false
    }
    zone_code = {
      type     = "string"
      nullable = false
    }
    description = {
      type     = "string"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "building_footprints" {
  title             = "Building Footprints"
  data_source       = data_source.city-postgis
  table             = "cadastre.buildings"
  id_field          = "building_id"
  display_field     = "height_m"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    building_id = {
      type     = "int"
      nullable = false
    }
    height_m = {
      type     = "double"
      nullable = true
    }
    year_built = {
      type     = "int"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "roads" {
  title             = "Road Centerlines"
  data_source       = data_source.city-postgis
  table             = "transport.roads"
  id_field          = "road_id"
  display_field     = "name"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "LineString"
    srid   = 4326
  }
  fields = {
    road_id = {
      type     = "string"
      nullable = false
    }
    name = {
      type     = "string"
      nullable = true
    }
    road_type = {
      type     = "string"
      nullable = true
    }
    surface_type = {
      type     = "string"
      nullable = true
    }
    speed_limit = {
      type     = "int"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "bus_stops" {
  title             = "Bus Stops"
  data_source       = data_source.city-postgis
  table             = "transport.bus_stops"
  id_field          = "stop_id"
  display_field     = "stop_name"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Point"
    srid   = 4326
  }
  fields = {
    stop_id = {
      type     = "string"
      nullable = false
    }
    stop_name = {
      type     = "string"
      nullable = true
    }
    routes = {
      type     = "string"
      nullable = true
    }
    shelter = {
      type     = "boolean"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "rail_lines" {
  title             = "Rail Lines"
  data_source       = data_source.city-postgis
  table             = "transport.rail_lines"
  id_field          = "rail_id"
  display_field     = "operator"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "LineString"
    srid   = 4326
  }
  fields = {
    rail_id = {
      type     = "int"
      nullable = false
    }
    operator = {
      type     = "string"
      nullable = true
    }
    gauge_mm = {
      type     = "int"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "traffic_signals" {
  title             = "Traffic Signals"
  data_source       = data_source.city-postgis
  table             = "transport.traffic_signals"
  id_field          = "signal_id"
  display_field     = "intersection"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Point"
    srid   = 4326
  }
  fields = {
    signal_id = {
      type     = "int"
      nullable = false
    }
    intersection = {
      type     = "string"
      nullable = true
    }
    installed = {
      type     = "date"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "wetlands" {
  title             = "Wetlands"
  data_source       = data_source.city-postgis
  table             = "env.wetlands"
  id_field          = "wetland_id"
  display_field     = "classification"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    wetland_id = {
      type     = "int"
      nullable = false
    }
    classification = {
      type     = "string"
      nullable = true
    }
    area_ha = {
      type     = "double"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "flood_zones" {
  title             = "Flood Hazard Zones"
  data_source       = data_source.city-postgis
  table             = "env.flood_zones"
  id_field          = "zone_id"
  display_field     = "flood_zone"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    zone_id = {
      type     = "int"
      nullable = false
    }
    flood_zone = {
      type     = "string"
      nullable = false
    }
    return_period_years = {
      type     = "int"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "tree_canopy" {
  title             = "Tree Canopy"
  data_source       = data_source.city-postgis
  table             = "env.tree_canopy"
  id_field          = "canopy_id"
  display_field     = "canopy_pct"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Polygon"
    srid   = 4326
  }
  fields = {
    canopy_id = {
      type     = "int"
      nullable = false
    }
    canopy_pct = {
      type     = "double"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "water_mains" {
  title             = "Water Mains"
  data_source       = data_source.city-postgis
  table             = "util.water_mains"
  id_field          = "main_id"
  display_field     = "diameter_mm"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "LineString"
    srid   = 4326
  }
  fields = {
    main_id = {
      type     = "int"
      nullable = false
    }
    diameter_mm = {
      type     = "int"
      nullable = true
    }
    material = {
      type     = "string"
      nullable = true
    }
    install_year = {
      type     = "int"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "hydrants" {
  title             = "Fire Hydrants"
  data_source       = data_source.city-postgis
  table             = "util.hydrants"
  id_field          = "hydrant_id"
  display_field     = "flow_gpm"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "Point"
    srid   = 4326
  }
  fields = {
    hydrant_id = {
      type     = "int"
      nullable = false
    }
    flow_gpm = {
      type     = "int"
      nullable = true
    }
    last_inspected = {
      type     = "date"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

layer "sewer_lines" {
  title             = "Sewer Lines"
  data_source       = data_source.city-postgis
  table             = "util.sewer_lines"
  id_field          = "sewer_id"
  display_field     = "diameter_mm"
  introspect_fields = true
  geometry = {
    column = "geom"
    type   = "LineString"
    srid   = 4326
  }
  fields = {
    sewer_id = {
      type     = "int"
      nullable = false
    }
    diameter_mm = {
      type     = "int"
      nullable = true
    }
    flow_type = {
      type     = "string"
      nullable = true
    }
    geom = {
      type = "geometry"
    }
  }
  services = [service.ogc_api, service.wfs]
}

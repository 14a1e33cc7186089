//! A PostGIS table as Honua would serve it: its geometry column, type and SRID, its primary key, its
//! columns with Honua's field types, its extent in CRS84 and its comment.
//!
//! Everything runs in one read-only transaction with a statement timeout, so nothing here can change
//! the database or hold it. Schema and table names are bound as parameters of catalogue queries, never
//! written into SQL. The one query that must name the table in its `FROM` (`ST_Extent`, when the
//! planner's statistics give no estimate) names it only after the catalogue has returned that exact
//! name, and quotes it as an identifier (`quote_ident`'s rules), so no text of a request reaches SQL.
//!
//! The type mapping is Honua's (`Data/Validation/PostgresSchemaDiscoveryService.cs`, Honua.Server
//! `00710654`); the refusal of tables without a primary key is its discovery's
//! (`Core/Discovery/PostGisTableDiscoveryService.cs` skips them).

use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection, Row};

/// Longest any one statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A column, as the layer's `fields` will list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    /// PostgreSQL's type name (`varchar`, `int4`, `_text`, …).
    pub pg_type: String,
    /// Honua's field type for it (`string`, `int32`, …).
    pub field_type: String,
    pub nullable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<i32>,
    /// Honua has no type for it: it is served as text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub as_text: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeometryColumn {
    pub column: String,
    /// Honua's geometry type (`MultiLineString`).
    pub geometry_type: String,
    pub srid: i32,
    /// A `geography` column (from `geography_columns`).
    pub geography: bool,
}

/// Everything read about one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub geometry: GeometryColumn,
    /// Further geometry columns, not served by the layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_geometry_columns: Vec<String>,
    pub primary_key: String,
    /// Every column but the geometry ones, in table order.
    pub columns: Vec<Column>,
    /// `[minx, miny, maxx, maxy]` in CRS84, rounded to 1e-6 degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extent: Option<[f64; 4]>,
    /// How the extent was found: `estimated` (planner statistics) or `computed` (`ST_Extent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extent_source: Option<&'static str>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column a person would read a feature by: the first text column that is not the key.
    pub fn display_field(&self) -> &str {
        self.columns
            .iter()
            .find(|c| c.field_type == "string" && !c.as_text && c.name != self.primary_key)
            .map_or(self.primary_key.as_str(), |c| c.name.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    #[error("cannot connect to the data source's database ({target}): {message}. Check that it is reachable from here, or give --database-url")]
    Connect { target: String, message: String },
    #[error("table `{schema}.{table}` does not exist (or is not visible to this user); tables of schema `{schema}`: {known}")]
    NoTable { schema: String, table: String, known: String },
    #[error("schema `{schema}` does not exist (or is not visible to this user); schemas: {known}")]
    NoSchema { schema: String, known: String },
    #[error("`{0}` has no primary key: Honua serves a table by a unique id and its discovery skips tables without one. Add a primary key (for example `ALTER TABLE {0} ADD COLUMN id bigserial PRIMARY KEY`), then ask again")]
    NoPrimaryKey(String),
    #[error("`{table}` has a primary key of {n} columns ({columns}); a Honua layer has one id field. Add a single-column key, or publish a view that has one")]
    CompositeKey { table: String, n: usize, columns: String },
    #[error("`{0}` has no geometry column registered in `geometry_columns` or `geography_columns`; Honua serves features with a geometry")]
    NoGeometry(String),
    #[error("reading `{table}` failed: {message}")]
    Query { table: String, message: String },
    #[error("the data source's connection string is not one this tool can read: {0}")]
    ConnectionString(String),
}

/// Connection options from an Npgsql connection string (`Host=…;Port=…;Database=…;Username=…;
/// Password=…;SslMode=…`, as Honua's data sources write them) or a `postgres://` URL. Pool settings and
/// keys this tool does not need are ignored.
pub fn connect_options(connection: &str) -> Result<PgConnectOptions, IntrospectError> {
    let trimmed = connection.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return trimmed.parse().map_err(|e: sqlx::Error| IntrospectError::ConnectionString(e.to_string()));
    }
    let mut options = PgConnectOptions::new_without_pgpass().application_name("honua-ai");
    for part in trimmed.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        // The part itself is never quoted back: it may be the tail of a password.
        let Some((key, value)) = part.split_once('=') else {
            return Err(IntrospectError::ConnectionString(
                "a part between `;` is not `key=value` (a value holding `;` must be quoted, as Npgsql reads it)".into(),
            ));
        };
        let value = value.trim();
        match key.trim().to_lowercase().replace(' ', "").as_str() {
            "host" | "server" => options = options.host(value),
            "port" => {
                let port = value
                    .parse()
                    .map_err(|_| IntrospectError::ConnectionString(format!("Port `{value}` is not a number")))?;
                options = options.port(port)
            }
            "database" | "db" | "initialcatalog" => options = options.database(value),
            "username" | "user" | "userid" | "uid" => options = options.username(value),
            "password" | "pwd" => options = options.password(value),
            "sslmode" => {
                let mode = match value.to_lowercase().as_str() {
                    "disable" => PgSslMode::Disable,
                    "allow" => PgSslMode::Allow,
                    "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verifyca" | "verify-ca" => PgSslMode::VerifyCa,
                    "verifyfull" | "verify-full" => PgSslMode::VerifyFull,
                    _ => return Err(IntrospectError::ConnectionString(format!("SslMode `{value}` is not known"))),
                };
                options = options.ssl_mode(mode)
            }
            _ => {}
        }
    }
    Ok(options)
}

/// Where a connection goes, for messages: host, port and database, never the user or the password.
pub fn describe(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or("(default database)"))
}

/// Honua's field type for a PostgreSQL type (by `udt_name`), and whether it is only served as text.
pub fn field_type(udt_name: &str) -> (&'static str, bool) {
    match udt_name {
        "varchar" | "bpchar" | "text" | "name" | "citext" | "char" => ("string", false),
        "int2" => ("int16", false),
        "int4" => ("int32", false),
        "int8" => ("int64", false),
        "float4" => ("float32", false),
        "float8" => ("float64", false),
        "numeric" => ("decimal", false),
        "bool" => ("boolean", false),
        "date" => ("date", false),
        "timestamp" => ("datetime", false),
        "timestamptz" => ("datetimeoffset", false),
        "uuid" => ("guid", false),
        "json" | "jsonb" => ("json", false),
        "bytea" => ("binary", false),
        _ => ("string", true),
    }
}

/// Honua's spelling of a PostGIS geometry type (`MULTILINESTRING`, `MULTILINESTRINGZ` → `MultiLineString`).
pub fn geometry_type(postgis: &str) -> String {
    let upper = postgis.to_uppercase();
    let base = ["ZM", "Z", "M"].iter().find_map(|s| upper.strip_suffix(s).filter(|b| is_type(b))).unwrap_or(&upper);
    match base {
        "POINT" => "Point",
        "LINESTRING" => "LineString",
        "POLYGON" => "Polygon",
        "MULTIPOINT" => "MultiPoint",
        "MULTILINESTRING" => "MultiLineString",
        "MULTIPOLYGON" => "MultiPolygon",
        "GEOMETRYCOLLECTION" => "GeometryCollection",
        _ => "Geometry",
    }
    .to_string()
}

fn is_type(base: &str) -> bool {
    matches!(
        base,
        "POINT"
            | "LINESTRING"
            | "POLYGON"
            | "MULTIPOINT"
            | "MULTILINESTRING"
            | "MULTIPOLYGON"
            | "GEOMETRYCOLLECTION"
            | "GEOMETRY"
    )
}

/// An identifier quoted as PostgreSQL's `quote_ident` does.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Reads `schema.table` through `options`.
pub async fn introspect(options: &PgConnectOptions, schema: &str, table: &str) -> Result<TableInfo, IntrospectError> {
    let target = describe(options);
    let connect = sqlx::PgConnection::connect_with(options);
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(IntrospectError::Connect { target, message: connect_message(&e) }),
        Err(_) => {
            return Err(IntrospectError::Connect {
                target,
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            })
        }
    };
    let qualified = format!("{schema}.{table}");
    let failed = |e: sqlx::Error| IntrospectError::Query { table: qualified.clone(), message: e.to_string() };
    let mut tx = conn.begin().await.map_err(failed)?;
    sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await.map_err(failed)?;
    // `SET LOCAL` takes no parameters; the value is this program's constant.
    sqlx::query(&format!("SET LOCAL statement_timeout = {}", STATEMENT_TIMEOUT.as_millis()))
        .execute(&mut *tx)
        .await
        .map_err(failed)?;

    let found = sqlx::query(
        "SELECT c.oid::int8 AS oid, obj_description(c.oid, 'pg_class') AS comment \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
    )
    .bind(schema)
    .bind(table)
    .fetch_optional(&mut *tx)
    .await
    .map_err(failed)?;
    let Some(found) = found else {
        return Err(missing_table(&mut tx, schema, table).await.unwrap_or_else(failed));
    };
    let oid: i64 = found.try_get("oid").map_err(failed)?;
    let comment: Option<String> = found.try_get("comment").map_err(failed)?;

    let mut geometries: Vec<GeometryColumn> = Vec::new();
    for (sql, geography) in [
        (
            "SELECT f_geometry_column::text AS col, type::text AS kind, srid::int4 AS srid FROM public.geometry_columns \
             WHERE f_table_schema = $1 AND f_table_name = $2 ORDER BY 1",
            false,
        ),
        (
            "SELECT f_geography_column::text AS col, type::text AS kind, srid::int4 AS srid FROM public.geography_columns \
             WHERE f_table_schema = $1 AND f_table_name = $2 ORDER BY 1",
            true,
        ),
    ] {
        let rows = sqlx::query(sql).bind(schema).bind(table).fetch_all(&mut *tx).await.map_err(failed)?;
        for row in rows {
            geometries.push(GeometryColumn {
                column: row.try_get("col").map_err(failed)?,
                geometry_type: geometry_type(&row.try_get::<String, _>("kind").map_err(failed)?),
                srid: row.try_get("srid").map_err(failed)?,
                geography,
            });
        }
    }
    if geometries.is_empty() {
        return Err(IntrospectError::NoGeometry(qualified));
    }
    let geometry = geometries.remove(0);
    let other_geometry_columns: Vec<String> = geometries.into_iter().map(|g| g.column).collect();

    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::oid AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(oid)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let primary_key = match keys.as_slice() {
        [] => return Err(IntrospectError::NoPrimaryKey(qualified)),
        [one] => one.clone(),
        many => {
            return Err(IntrospectError::CompositeKey { table: qualified, n: many.len(), columns: many.join(", ") })
        }
    };

    let rows = sqlx::query(
        "SELECT a.attname::text AS name, t.typname::text AS udt, NOT a.attnotnull AS nullable, \
                information_schema._pg_char_max_length(a.atttypid, a.atttypmod)::int4 AS max_length, \
                information_schema._pg_numeric_precision(a.atttypid, a.atttypmod)::int4 AS precision, \
                information_schema._pg_numeric_scale(a.atttypid, a.atttypmod)::int4 AS scale \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let mut columns = Vec::new();
    for row in rows {
        let name: String = row.try_get("name").map_err(failed)?;
        let udt: String = row.try_get("udt").map_err(failed)?;
        if matches!(udt.as_str(), "geometry" | "geography") {
            continue;
        }
        let (field_type, as_text) = field_type(&udt);
        // Honua reads precision and scale of numerics only; integers' binary precision is noise.
        let numeric = udt == "numeric";
        columns.push(Column {
            nullable: row.try_get::<bool, _>("nullable").map_err(failed)? && name != primary_key,
            max_length: row.try_get("max_length").map_err(failed)?,
            precision: if numeric { row.try_get("precision").map_err(failed)? } else { None },
            scale: if numeric { row.try_get("scale").map_err(failed)? } else { None },
            name,
            pg_type: udt,
            field_type: field_type.to_string(),
            as_text,
        });
    }

    let (extent, extent_source) = extent(&mut tx, schema, table, &geometry).await.map_err(failed)?;
    tx.rollback().await.map_err(failed)?;
    Ok(TableInfo {
        schema: schema.to_string(),
        table: table.to_string(),
        comment: comment.filter(|c| !c.trim().is_empty()),
        geometry,
        other_geometry_columns,
        primary_key,
        columns,
        extent,
        extent_source,
    })
}

/// A connection error without the options it was given (sqlx's messages name no password, but a
/// configuration error may quote the string).
fn connect_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "the connection settings are not valid".into(),
        other => other.to_string(),
    }
}

/// The refusal for a table that is not there: the schema's tables, or the schemas when the schema
/// itself is missing.
async fn missing_table(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    schema: &str,
    table: &str,
) -> Result<IntrospectError, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1 LIMIT 100",
    )
    .bind(schema)
    .fetch_all(&mut **tx)
    .await?;
    if !tables.is_empty() {
        return Ok(IntrospectError::NoTable { schema: schema.into(), table: table.into(), known: tables.join(", ") });
    }
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = $1 \
         UNION ALL SELECT * FROM (SELECT nspname::text FROM pg_catalog.pg_namespace \
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1 LIMIT 100) s",
    )
    .bind(schema)
    .fetch_all(&mut **tx)
    .await?;
    if schemas.first().map(String::as_str) == Some(schema) {
        return Ok(IntrospectError::NoTable { schema: schema.into(), table: table.into(), known: "(none)".into() });
    }
    Ok(IntrospectError::NoSchema { schema: schema.into(), known: schemas.join(", ") })
}

/// The extent in CRS84: the planner's estimate when there is one, else `ST_Extent` over the column.
async fn extent(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    schema: &str,
    table: &str,
    geometry: &GeometryColumn,
) -> Result<(Option<[f64; 4]>, Option<&'static str>), sqlx::Error> {
    if geometry.srid <= 0 {
        return Ok((None, None));
    }
    const CORNERS: &str = "SELECT ST_XMin(e)::float8 AS x0, ST_YMin(e)::float8 AS y0, ST_XMax(e)::float8 AS x1, ST_YMax(e)::float8 AS y1 FROM ";
    // A missing estimate is an error in some PostGIS versions: a savepoint keeps the transaction.
    sqlx::query("SAVEPOINT estimate").execute(&mut **tx).await?;
    let estimated = sqlx::query(&format!(
        "{CORNERS}(SELECT ST_Transform(ST_SetSRID(ST_EstimatedExtent($1, $2, $3)::geometry, $4), 4326) AS e) s"
    ))
    .bind(schema)
    .bind(table)
    .bind(&geometry.column)
    .bind(geometry.srid)
    .fetch_optional(&mut **tx)
    .await;
    match estimated {
        Ok(row) => {
            sqlx::query("RELEASE SAVEPOINT estimate").execute(&mut **tx).await?;
            if let Some(corners) = row.as_ref().and_then(corners) {
                return Ok((Some(corners), Some("estimated")));
            }
        }
        Err(_) => {
            sqlx::query("ROLLBACK TO SAVEPOINT estimate").execute(&mut **tx).await?;
        }
    }
    // Names from the catalogue (checked above to be this table's), quoted as identifiers.
    let column = if geometry.geography {
        format!("{}::geometry", quote_ident(&geometry.column))
    } else {
        quote_ident(&geometry.column)
    };
    let sql = format!(
        "{CORNERS}(SELECT ST_Transform(ST_SetSRID(ST_Extent({column})::geometry, $1), 4326) AS e FROM {}.{}) s",
        quote_ident(schema),
        quote_ident(table)
    );
    let row = sqlx::query(&sql).bind(geometry.srid).fetch_optional(&mut **tx).await?;
    Ok(match row.as_ref().and_then(corners) {
        Some(c) => (Some(c), Some("computed")),
        None => (None, None),
    })
}

fn corners(row: &sqlx::postgres::PgRow) -> Option<[f64; 4]> {
    let get = |name: &str| row.try_get::<Option<f64>, _>(name).ok().flatten();
    let round = |v: f64| (v * 1e6).round() / 1e6;
    Some([round(get("x0")?), round(get("y0")?), round(get("x1")?), round(get("y1")?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npgsql_strings_and_urls() {
        let o = connect_options("Host=db.example.org;Port=6432;Database=gis;Username=honua;Password=s3cr;et?;SslMode=Require;Maximum Pool Size=20");
        // A `;` in a password is not expressible unquoted in Npgsql either: the part after it is not key=value.
        assert!(!o.unwrap_err().to_string().contains("et?"));
        let o = connect_options("Host=db.example.org;Port=6432;Database=gis;Username=honua;Password=pw;SslMode=Require;Maximum Pool Size=20").unwrap();
        assert_eq!(describe(&o), "db.example.org:6432/gis");
        let o = connect_options("postgres://u:p@127.0.0.1:5432/test").unwrap();
        assert_eq!(describe(&o), "127.0.0.1:5432/test");
        let err = connect_options("Host=x;Password=hunter2;Port=abc").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn types_as_honua_maps_them() {
        assert_eq!(field_type("int4"), ("int32", false));
        assert_eq!(field_type("timestamptz"), ("datetimeoffset", false));
        assert_eq!(field_type("_int4"), ("string", true));
        assert_eq!(geometry_type("MULTILINESTRING"), "MultiLineString");
        assert_eq!(geometry_type("POINTZ"), "Point");
        assert_eq!(geometry_type("GEOMETRY"), "Geometry");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}

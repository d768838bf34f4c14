//! Batch upserts as one fixed statement: `INSERT ... SELECT * FROM unnest($1::type[], ...)`
//! with one array parameter per column.
//!
//! The worker writes ~500 legs per batch. As a multi-row `VALUES` insert that is a statement
//! of 20,000 parameters whose text changes with the row count, so Postgres parses and plans it
//! anew every time: measured on a 1M-call tenant, parsing and binding took longer (11 ms per
//! batch) than executing it (10 ms). With one array per column the statement has a constant
//! shape and ~40 parameters, and it is prepared once per connection (`crate::prepared`).

/// The SQL of an unnest upsert into `table`: `columns` as `(name, Postgres type)` in bind
/// order; on a conflict over `conflict`, every column but the conflict's and `keep` is set
/// from the new row, and `updated_at` to `now()`.
pub(crate) fn upsert_sql(
    table: &str,
    columns: &[(&str, &str)],
    conflict: &[&str],
    keep: &[&str],
) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, pg_type))| format!("${}::{pg_type}[]", i + 1))
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|name| !conflict.contains(name) && !keep.contains(name))
        .map(|name| format!("{name} = excluded.{name}"))
        .chain(std::iter::once("updated_at = now()".to_owned()))
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) DO UPDATE SET {}",
        names.join(", "),
        arrays.join(", "),
        conflict.join(", "),
        updates.join(", ")
    )
}

/// Declares the unnest upsert of a table as one item, `$name`, from which everything else is
/// derived: each column is named once, with its row struct field, its diesel SQL type and its
/// Postgres type, so the statement's columns, its update list and its bound arrays cannot
/// drift apart. `$name::COLUMNS` lists the written columns, so a test can check them against
/// the table's (`columns_missing_from`); `$name::execute(conn, rows)` runs the statement and
/// returns the number of rows written, or, with `returning: "a, b" as T`, a `T` per row written
/// (`RETURNING a, b`: a fixed list of named columns, never `*`, as the statement is prepared).
macro_rules! unnest_upsert {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident for $row:ty;
        table: $table:literal,
        conflict: [$($conflict:literal),+],
        keep: [$($keep:literal),*],
        $(returning: $returning:literal as $returned:ty,)?
        columns: [$($field:ident: $sql_type:ty = $pg_type:literal),+ $(,)?]
    ) => {
        $(#[$meta])*
        $vis struct $name;

        impl $name {
            /// The written columns, `(name, Postgres type)`, in bind order.
            pub(crate) const COLUMNS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), $pg_type)),+];

            /// Upserts `rows` in one statement ([`crate::unnest::upsert_sql`]).
            pub(crate) async fn execute(
                conn: &mut diesel_async::AsyncPgConnection,
                rows: &[$row],
            ) -> diesel::QueryResult<$crate::unnest::unnest_upsert!(@output $($returned)?)> {
                let sql = $crate::unnest::upsert_sql(
                    $table,
                    Self::COLUMNS,
                    &[$($conflict),+],
                    &[$($keep),*],
                );
                $(let sql = format!("{sql} RETURNING {}", $returning);)?
                let statement = diesel::sql_query(sql)
                    $(.bind::<diesel::sql_types::Array<$sql_type>, _>(
                        rows.iter().map(|row| row.$field.clone()).collect::<Vec<_>>(),
                    ))+;
                // The text is the same for every batch: prepared once per connection.
                let statement = $crate::prepared::PrepareOnce::prepared(statement);
                $crate::unnest::unnest_upsert!(@run statement, conn $(, $returned)?)
            }
        }
    };
    (@output) => { usize };
    (@output $returned:ty) => { Vec<$returned> };
    (@run $statement:ident, $conn:ident) => { $statement.execute($conn).await };
    (@run $statement:ident, $conn:ident, $returned:ty) => { $statement.load($conn).await };
}

pub(crate) use unnest_upsert;

/// Declares a diesel upsert (`INSERT ... VALUES ... ON CONFLICT DO UPDATE`) as one item, for
/// tables with a column `unnest` cannot carry (an array column: `unnest` flattens arrays of
/// arrays). Each column is named once: `$name::COLUMNS` lists the written columns, so a test
/// can check them against the table's (`columns_missing_from`), and `$name::execute(conn, rows)`
/// replaces every `replace` column and sets `updated_at` to `now()` on a conflict over
/// `conflict`. `$row` must be `Insertable` into the table with exactly these columns.
macro_rules! values_upsert {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident for $row:ty;
        table: $table:ident,
        conflict: [$($conflict:ident),+],
        replace: [$($column:ident),+ $(,)?]
    ) => {
        $(#[$meta])*
        $vis struct $name;

        impl $name {
            /// The written columns, `(name, "")`: the key's, then the replaced ones (read by the
            /// coverage tests only).
            #[cfg_attr(not(test), expect(dead_code))]
            pub(crate) const COLUMNS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($conflict), "")),+, $((stringify!($column), "")),+];

            /// Upserts `rows` in one statement.
            pub(crate) async fn execute(
                conn: &mut diesel_async::AsyncPgConnection,
                rows: &[$row],
            ) -> diesel::QueryResult<usize> {
                use diesel::ExpressionMethods;
                use diesel::upsert::excluded;
                use $crate::schema::$table::dsl as t;
                let statement = diesel::insert_into($crate::schema::$table::table)
                    .values(rows)
                    .on_conflict(($(t::$conflict),+))
                    .do_update()
                    .set((
                        $(t::$column.eq(excluded(t::$column)),)+
                        t::updated_at.eq(diesel::dsl::now),
                    ));
                // Spelled out: the caller's scope may hold diesel's own `RunQueryDsl` too.
                diesel_async::RunQueryDsl::execute(statement, conn).await
            }
        }
    };
}

pub(crate) use values_upsert;

/// The columns of `table` in `schema.rs` that `written` does not write and that are not
/// `exceptions` (columns the database fills: `id`, `created_at`, `updated_at`): a column added
/// to the table but forgotten in its upsert, whose updates would be silently dropped.
#[cfg(test)]
pub(crate) fn columns_missing_from(
    table: &str,
    written: &[(&str, &str)],
    exceptions: &[&str],
) -> Vec<String> {
    let schema = include_str!("schema.rs");
    let header = format!("    {table} (");
    let start = schema.find(&header).expect("the table is in schema.rs");
    let body = &schema[start..];
    let body = &body[..body.find("\n    }").expect("the table block ends")];
    body.lines()
        .skip(1)
        .filter(|line| !line.trim_start().starts_with("//"))
        .filter_map(|line| line.trim().split_once(" -> "))
        .map(|(name, _)| name.trim_start_matches("r#").to_owned())
        .filter(|name| {
            !written.iter().any(|(w, _)| w == name) && !exceptions.contains(&name.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_names_each_column_once_and_updates_all_but_the_key_and_kept_ones() {
        let sql = upsert_sql(
            "t",
            &[
                ("a", "uuid"),
                ("b", "bigint"),
                ("c", "text"),
                ("d", "jsonb"),
            ],
            &["a", "b"],
            &["d"],
        );
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c, d) SELECT * FROM unnest($1::uuid[], $2::bigint[], \
             $3::text[], $4::jsonb[]) ON CONFLICT (a, b) DO UPDATE SET c = excluded.c, \
             updated_at = now()"
        );
    }

    #[test]
    fn a_column_no_upsert_writes_is_reported() {
        let missing = columns_missing_from("calls", &[("app_id", "uuid")], &["id"]);
        assert!(
            missing.contains(&"transferred_from".to_owned()),
            "{missing:?}"
        );
        assert!(!missing.iter().any(|c| c == "app_id" || c == "id"));
    }
}

//! `db::schema` (hand-maintained diesel tables) must name exactly the columns, in order, that the
//! migrations create. (Types and nullability are checked by every query the suite runs.)

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use e2e::TestDatabase;

use db::schema::{
    api_keys, apps, audit_log, calls, dead_letters, dialpad_connections, dialpad_subscriptions,
    dialpad_webhooks, event_queue, logical_calls, messages, oauth_states, voicemails,
    webhook_events,
};

/// Column names as diesel renders `SELECT table.*`.
fn diesel_columns(select_all: String) -> Vec<String> {
    let columns = select_all
        .trim_start_matches("SELECT ")
        .split(" FROM ")
        .next()
        .unwrap_or_default()
        .to_owned();
    columns
        .split(", ")
        .map(|column| {
            column
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[derive(QueryableByName)]
struct ColumnInfo {
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

#[tokio::test]
async fn schema_rs_matches_the_migrations() {
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    let tables = [
        (
            "apps",
            diesel::debug_query::<Pg, _>(&apps::table.select(apps::all_columns)).to_string(),
        ),
        (
            "api_keys",
            diesel::debug_query::<Pg, _>(&api_keys::table.select(api_keys::all_columns))
                .to_string(),
        ),
        (
            "webhook_events",
            diesel::debug_query::<Pg, _>(
                &webhook_events::table.select(webhook_events::all_columns),
            )
            .to_string(),
        ),
        (
            "calls",
            diesel::debug_query::<Pg, _>(&calls::table.select(calls::all_columns)).to_string(),
        ),
        (
            "dialpad_connections",
            diesel::debug_query::<Pg, _>(
                &dialpad_connections::table.select(dialpad_connections::all_columns),
            )
            .to_string(),
        ),
        (
            "dialpad_webhooks",
            diesel::debug_query::<Pg, _>(
                &dialpad_webhooks::table.select(dialpad_webhooks::all_columns),
            )
            .to_string(),
        ),
        (
            "dialpad_subscriptions",
            diesel::debug_query::<Pg, _>(
                &dialpad_subscriptions::table.select(dialpad_subscriptions::all_columns),
            )
            .to_string(),
        ),
        (
            "audit_log",
            diesel::debug_query::<Pg, _>(&audit_log::table.select(audit_log::all_columns))
                .to_string(),
        ),
        (
            "dead_letters",
            diesel::debug_query::<Pg, _>(&dead_letters::table.select(dead_letters::all_columns))
                .to_string(),
        ),
        (
            "event_queue",
            diesel::debug_query::<Pg, _>(&event_queue::table.select(event_queue::all_columns))
                .to_string(),
        ),
        (
            "logical_calls",
            diesel::debug_query::<Pg, _>(&logical_calls::table.select(logical_calls::all_columns))
                .to_string(),
        ),
        (
            "messages",
            diesel::debug_query::<Pg, _>(&messages::table.select(messages::all_columns))
                .to_string(),
        ),
        (
            "voicemails",
            diesel::debug_query::<Pg, _>(&voicemails::table.select(voicemails::all_columns))
                .to_string(),
        ),
        (
            "oauth_states",
            diesel::debug_query::<Pg, _>(&oauth_states::table.select(oauth_states::all_columns))
                .to_string(),
        ),
    ];
    for (table, select_all) in tables {
        let in_database: Vec<ColumnInfo> = diesel::sql_query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind::<diesel::sql_types::Text, _>(table)
        .load(&mut conn)
        .await
        .expect("information_schema is readable");
        let names: Vec<String> = in_database.iter().map(|c| c.column_name.clone()).collect();
        assert_eq!(
            diesel_columns(select_all.clone()),
            names,
            "columns of {table}"
        );
    }
}

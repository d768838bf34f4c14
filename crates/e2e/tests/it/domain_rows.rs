//! Every fixture into the right domain table with the fixtures README's ground truth, and the
//! convergence property: any order, duplicates, batch splits and racing workers give the rows
//! in-order processing gives.

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use e2e::{TestApp, TestStack, fixture};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const OUTBOUND: [&str; 5] = crate::OUTBOUND;
const CALL_CENTER: [&str; 5] = [
    "call_inbound_cc_01_queued.json",
    "call_inbound_cc_02_ringing.json",
    "call_inbound_cc_03_connected.json",
    "call_inbound_cc_04_hangup_agent_leg.json",
    "call_inbound_cc_05_hangup_callcenter_leg.json",
];
const VOICEMAIL: [&str; 6] = [
    "call_inbound_vm_01_ringing.json",
    "call_inbound_vm_02_missed.json",
    "call_inbound_vm_03_voicemail.json",
    "call_inbound_vm_04_hangup.json",
    "call_inbound_vm_05_voicemail_uploaded.json",
    "call_inbound_vm_06_transcription.json",
];
const TRANSFER: [&str; 6] = [
    "call_transfer_01_department_ringing.json",
    "call_transfer_02_agent_a_connected.json",
    "call_transfer_03_agent_b_connected.json",
    "call_transfer_04_agent_a_hangup.json",
    "call_transfer_05_agent_b_hangup.json",
    "call_transfer_06_department_hangup.json",
];
const SMS: [&str; 3] = [
    "sms_outbound_01_pending.json",
    "sms_outbound_02_status_success.json",
    "sms_inbound_01_received.json",
];
const EDGES: [&str; 4] = [
    "call_edge_01_null_contact.json",
    "call_edge_02_ids_above_2pow53.json",
    "call_edge_03_unicode_names.json",
    "sms_edge_04_unicode_mms.json",
];

/// The app's rows of `table` as JSON objects without the columns that differ between apps or
/// runs (`app_id`, surrogate ids, row timestamps), ordered by `order_by`.
async fn rows(stack: &TestStack, app: &TestApp, table: &str, order_by: &str) -> Vec<Value> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        row: String,
    }
    let mut conn = stack.db.connect().await;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT (to_jsonb(t) - 'id' - 'app_id' - 'created_at' - 'updated_at')::text AS row \
         FROM {table} t WHERE app_id = $1 ORDER BY {order_by}"
    ))
    .bind::<SqlUuid, _>(app.app_id)
    .load(&mut conn)
    .await
    .expect("rows load");
    rows.iter()
        .map(|r| serde_json::from_str(&r.row).expect("JSON row"))
        .collect()
}

/// Everything the worker wrote for an app.
async fn domain_state(stack: &TestStack, app: &TestApp) -> [Vec<Value>; 4] {
    [
        rows(stack, app, "calls", "call_id").await,
        rows(stack, app, "logical_calls", "logical_call_id").await,
        rows(stack, app, "messages", "message_id").await,
        rows(stack, app, "voicemails", "call_id").await,
    ]
}

fn one<'a>(rows: &'a [Value], key: &str, id: i64) -> &'a Value {
    rows.iter()
        .find(|row| row[key].as_i64() == Some(id))
        .unwrap_or_else(|| panic!("no row with {key} = {id}"))
}

/// Epoch milliseconds of a timestamptz as Postgres renders it in JSON.
fn epoch_ms(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()?
            .timestamp_millis(),
    )
}

#[tokio::test]
async fn every_fixture_lands_in_its_table_with_the_ground_truth() {
    let stack = TestStack::spawn().await;
    let app = stack.create_app("ground truth").await;
    for lifecycle in [
        &OUTBOUND[..],
        &CALL_CENTER,
        &VOICEMAIL,
        &TRANSFER,
        &SMS,
        &EDGES,
    ] {
        stack.post_fixtures(&app, lifecycle).await;
    }
    stack.run_worker().await;
    assert_eq!(stack.events_by_status().await, [("done".to_owned(), 29)]);
    let [legs, calls, messages, voicemails] = domain_state(&stack, &app).await;
    assert_eq!(legs.len(), 10, "10 legs");
    assert_eq!(calls.len(), 7, "7 phone calls");

    // 1. Outbound, one leg.
    let outbound = one(&calls, "logical_call_id", 7_189_235_590_594_560);
    assert_eq!(outbound["status"], "completed");
    assert_eq!(outbound["direction"], "outbound");
    assert_eq!(
        (&outbound["from_number"], &outbound["to_number"]),
        (&json!("+14155550111"), &json!("+16175550142"))
    );
    assert_eq!(epoch_ms(&outbound["started_at"]), Some(1_795_104_000_112));
    assert_eq!(epoch_ms(&outbound["answered_at"]), Some(1_795_104_009_842));
    assert_eq!(epoch_ms(&outbound["ended_at"]), Some(1_795_104_264_160));
    assert_eq!(outbound["talk_time_ms"], 232_868);
    assert_eq!(outbound["hold_time_ms"], 21_450);
    assert_eq!(outbound["was_recorded"], true);
    assert_eq!(outbound["leg_count"], 1);
    let leg = one(&legs, "call_id", 7_189_235_590_594_560);
    assert_eq!(leg["recording_id"], "6458153277718528");
    assert_eq!(
        leg["recording_url"],
        "https://dialpad.com/secureblob/callrecording/6458153277718528"
    );
    assert!(
        leg["recap_summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("Priya called Jordan"))
    );
    assert_eq!(leg["recap_action_items"].as_array().map(Vec::len), Some(2));
    assert_eq!(leg["recap_outcome"], "Appointment confirmed");
    assert_eq!(
        leg["custom_data"],
        r#"{"crm_ref":"opp-4411","tenant_hint":"hp-dental"}"#
    );
    assert_eq!(
        leg["status"], "completed",
        "post-call states do not reopen the leg"
    );

    // 2. Call center: two legs, one call, answered by Marcus.
    let cc = one(&calls, "logical_call_id", 6_517_261_180_346_368);
    assert_eq!(cc["status"], "completed");
    assert_eq!(cc["leg_count"], 2);
    assert_eq!(
        (&cc["from_number"], &cc["to_number"]),
        (&json!("+13125550187"), &json!("+14155550120"))
    );
    assert_eq!(epoch_ms(&cc["answered_at"]), Some(1_795_105_213_398));
    assert_eq!(epoch_ms(&cc["ended_at"]), Some(1_795_105_401_314));
    assert_eq!(cc["talk_time_ms"], 187_604);
    assert_eq!(cc["total_duration_ms"], 201_266);
    assert_eq!(cc["first_answered_by"]["id"], "4709249234968576");
    assert_eq!(
        one(&legs, "call_id", 5_048_188_663_660_544)["logical_call_id"],
        6_517_261_180_346_368_i64
    );

    // 3. Missed, then a voicemail.
    let vm = one(&calls, "logical_call_id", 5_024_420_352_393_216);
    assert_eq!(vm["status"], "voicemail");
    assert_eq!(vm["answered_at"], Value::Null);
    assert_eq!(vm["voicemail"], true);
    assert_eq!(vm["talk_time_ms"], 0);
    assert_eq!(voicemails.len(), 1, "exactly one voicemail");
    let voicemail = &voicemails[0];
    assert_eq!(voicemail["call_id"], 5_024_420_352_393_216_i64);
    assert_eq!(
        voicemail["link"],
        "https://dialpad.com/secureblob/voicemail/7337175117225984"
    );
    assert_eq!(voicemail["recording_id"], "7337175117225984");
    assert_eq!(voicemail["duration_ms"], 31_840);
    assert_eq!(
        (&voicemail["from_number"], &voicemail["to_number"]),
        (&json!("+17185550164"), &json!("+14155550111"))
    );
    assert_eq!(
        voicemail["transcription_text"],
        "Hi Priya, it's Dana Kowalski. I need to move my Thursday appointment, please call me back at 718 555 0164. Thanks."
    );

    // 4. Transferred: three legs, one call, two handlers.
    let transfer = one(&calls, "logical_call_id", 8_341_797_169_152_000);
    assert_eq!(transfer["status"], "completed");
    assert_eq!(transfer["transferred"], true);
    assert_eq!(transfer["leg_count"], 3);
    assert_eq!(transfer["talk_time_ms"], 411_375);
    assert_eq!(transfer["duration_ms"], 410_934);
    assert_eq!(transfer["total_duration_ms"], 419_025);
    assert_eq!(transfer["first_answered_by"]["id"], "4709249234968576");
    assert_eq!(transfer["final_handler"]["id"], "7756170664517632");

    // 5. SMS: the status update updates its message.
    assert_eq!(messages.len(), 3);
    let outbound_sms = one(&messages, "message_id", 4_749_132_898_713_600);
    assert_eq!(outbound_sms["message_status"], "success");
    assert_eq!(outbound_sms["delivery_result"], "accepted");
    assert_eq!(outbound_sms["to_numbers"], json!(["+17185550164"]));
    assert_eq!(epoch_ms(&outbound_sms["sent_at"]), Some(1_795_111_990_012));
    assert_eq!(outbound_sms["event_count"], 2);
    let inbound_sms = one(&messages, "message_id", 7_678_007_467_352_064);
    assert_eq!(inbound_sms["direction"], "inbound");
    assert_eq!(
        inbound_sms["text"],
        "Hi, can I move Thursday's cleaning to Friday morning?"
    );
    assert_eq!(inbound_sms["target"]["id"], "8859217034616832");
    let mms = one(&messages, "message_id", 8_707_458_533_015_552);
    assert_eq!(mms["mms"], true);
    assert_eq!(
        mms["text"],
        "¡Gracias! 😊 Aquí está la foto del formulario — ¿está bien así?"
    );
    assert_eq!(mms["contact"]["name"], "Ana María Pérez 👩‍⚕️");

    // 6. Edges.
    let no_contact = one(&calls, "logical_call_id", 8_693_962_402_512_896);
    assert_eq!(no_contact["status"], "missed");
    assert_eq!(no_contact["contact"], Value::Null);
    let big = one(&legs, "call_id", 9_007_199_254_740_993);
    assert_eq!(big["master_call_id"], 9_007_199_254_740_995_i64);
    assert_eq!(big["target_id"], i64::MAX.to_string());
    assert_eq!(big["contact"]["id"], "9007199254740997");
    assert_eq!(
        one(&calls, "logical_call_id", 9_007_199_254_740_995)["status"],
        "completed"
    );
    let unicode = one(&calls, "logical_call_id", 4_975_168_442_179_584);
    assert_eq!(unicode["contact"]["name"], "Zoë Ñúñez-Øster 山田 太郎");
    assert_eq!(unicode["target"]["name"], "Priya Rāman 🦷");
}

/// Posts `events` in the order given (duplicates included), running the worker(s) after the
/// events at the given split points; `racing` drains with two workers at once.
async fn deliver(
    stack: &TestStack,
    app: &TestApp,
    events: &[Value],
    splits: &[usize],
    racing: Option<&worker::Worker>,
) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(stack.post_event(app, event).await.status(), 200);
        if splits.contains(&i) {
            match racing {
                Some(second) => {
                    let (a, b) = tokio::join!(stack.worker.drain(), second.drain());
                    a.expect("drains");
                    b.expect("drains");
                }
                None => {
                    stack.run_worker().await;
                }
            }
        }
    }
    stack.run_worker().await;
}

#[tokio::test]
async fn any_order_duplicates_and_racing_workers_converge() {
    let stack = TestStack::spawn().await;
    let mut settings = TestStack::worker_settings(&stack.db);
    settings.worker_batch_size = 2;
    let second = worker::Worker::build(settings)
        .await
        .expect("worker builds");
    let mut lifecycles: Vec<Vec<Value>> = [
        &OUTBOUND[..],
        &CALL_CENTER,
        &VOICEMAIL,
        &TRANSFER,
        &SMS,
        &EDGES,
    ]
    .iter()
    .map(|names| names.iter().map(|name| fixture(name)).collect())
    .collect();
    // The call center's last event also names a department leg above it: the logical call id
    // moves up to it, whenever that event arrives, and no row of the old id may remain.
    let mut regrouped: Vec<Value> = CALL_CENTER.iter().map(|name| fixture(name)).collect();
    regrouped[4]["master_call_id"] = json!(6_100_000_000_000_000_i64);
    lifecycles.push(regrouped);
    let mut rng = StdRng::seed_from_u64(0x00C0_FFEE);

    for in_order in lifecycles {
        let reference = stack.create_app("in order").await;
        deliver(&stack, &reference, &in_order, &[], None).await;
        let expected = domain_state(&stack, &reference).await;

        for round in 0..8 {
            let mut events = in_order.clone();
            events.shuffle(&mut rng);
            // Duplicate some events, as Dialpad's retries do.
            for _ in 0..rng.random_range(0..=3) {
                let again = events[rng.random_range(0..events.len())].clone();
                let at = rng.random_range(0..=events.len());
                events.insert(at, again);
            }
            let splits: Vec<usize> = (0..events.len()).filter(|_| rng.random_bool(0.4)).collect();
            let app = stack.create_app("shuffled").await;
            let racing = (round % 2 == 1).then_some(&second);
            deliver(&stack, &app, &events, &splits, racing).await;
            assert_eq!(
                domain_state(&stack, &app).await,
                expected,
                "delivered as {:?} (splits {splits:?}, racing {})",
                events
                    .iter()
                    .map(|e| e["state"].as_str().or(e["message_status"].as_str()))
                    .collect::<Vec<_>>(),
                racing.is_some()
            );
        }
    }
}

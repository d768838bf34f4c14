//! The Dialpad fixtures of `testdata/dialpad/` (realistic payloads, described in its
//! README.md) and the call lifecycles they form, for every test and benchmark that replays
//! them.

use serde_json::Value;

/// An outbound call, one leg: calling, connected, hangup, recording, recap summary.
pub const OUTBOUND: [&str; 5] = [
    "call_outbound_01_calling.json",
    "call_outbound_02_connected.json",
    "call_outbound_03_hangup.json",
    "call_outbound_04_recording.json",
    "call_outbound_05_recap_summary.json",
];

/// An inbound call to voicemail, one leg.
pub const INBOUND_VOICEMAIL: [&str; 6] = [
    "call_inbound_vm_01_ringing.json",
    "call_inbound_vm_02_missed.json",
    "call_inbound_vm_03_voicemail.json",
    "call_inbound_vm_04_hangup.json",
    "call_inbound_vm_05_voicemail_uploaded.json",
    "call_inbound_vm_06_transcription.json",
];

/// An inbound call through a call centre, two legs (the call centre's and the agent's).
pub const INBOUND_CALL_CENTRE: [&str; 5] = [
    "call_inbound_cc_01_queued.json",
    "call_inbound_cc_02_ringing.json",
    "call_inbound_cc_03_connected.json",
    "call_inbound_cc_04_hangup_agent_leg.json",
    "call_inbound_cc_05_hangup_callcenter_leg.json",
];

/// An inbound call to a department, transferred between two agents, three legs.
pub const TRANSFER: [&str; 6] = [
    "call_transfer_01_department_ringing.json",
    "call_transfer_02_agent_a_connected.json",
    "call_transfer_03_agent_b_connected.json",
    "call_transfer_04_agent_a_hangup.json",
    "call_transfer_05_agent_b_hangup.json",
    "call_transfer_06_department_hangup.json",
];

/// The four call lifecycles, each a call's events in the order Dialpad sends them.
pub const LIFECYCLES: [&[&str]; 4] = [
    &OUTBOUND,
    &INBOUND_VOICEMAIL,
    &INBOUND_CALL_CENTRE,
    &TRANSFER,
];

/// A fixture, parsed. Panics when it is missing or not JSON (a test setup error).
pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).expect("fixture is JSON")
}

/// A file of `testdata/dialpad/` (e.g. `jwt/...`), raw. Panics when it is missing.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../testdata/dialpad/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

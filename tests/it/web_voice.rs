//! Voice in the browser: `src/web/voice.js` in Debian's Chromium (playwright-core, a fake
//! microphone playing a 1 kHz tone) talks with a Rust participant playing 440 Hz through a
//! real server: each hears the other's tone; muting stops the browser's audio; leaving
//! leaves the room; a bad ticket is refused with its close code.

use crate::common::*;
use hearth::client::{VoiceEvent, VoicePlayer};
use hearth::voice::{sine, tone_power, FRAME_SAMPLES, SAMPLE_RATE};
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A 48 kHz mono 16-bit WAV of a tone, for Chromium's fake microphone.
fn write_wav(path: &std::path::Path, freq: f32, seconds: usize) {
    let samples = sine(freq, 12000.0, SAMPLE_RATE as usize * seconds, 0.0);
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    bytes.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write wav");
}

/// What the Rust participant decoded, frame by frame, with the time it arrived.
type Heard = Vec<(Instant, Vec<i16>)>;

#[test]
fn the_browser_and_a_rust_client_hear_each_other() {
    require_browser();
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    write_wav(&wav, 1000.0, 20);
    let (alice, bob, voice) = block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let guild = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/guilds"),
            json!({"name": "g"}),
        )
        .await;
        let gid = guild["id"].as_str().unwrap().to_string();
        let text = guild["channels"][0]["id"].as_str().unwrap().to_string();
        let voice = api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/guilds/{gid}/channels")),
            json!({"name": "voice", "kind": "voice"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let invite = api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/channels/{text}/invites")),
            json!({}),
        )
        .await;
        let code = invite["code"].as_str().unwrap();
        api_json(
            &bob,
            "POST",
            &server.url(&format!("/api/v1/invites/{code}")),
            json!({}),
        )
        .await;
        (alice, bob, voice)
    });
    // Alice (Rust) talks 440 Hz on a 20 ms schedule and keeps what she hears.
    let alice_conn =
        Arc::new(block_on(alice.join_voice(&server.origin, &voice)).expect("alice joins"));
    let stop = Arc::new(AtomicBool::new(false));
    let heard: Arc<Mutex<Heard>> = Arc::new(Mutex::new(Vec::new()));
    let talker = {
        let (conn, stop, heard) = (alice_conn.clone(), stop.clone(), heard.clone());
        std::thread::spawn(move || {
            block_on(async {
                let mut player = VoicePlayer::new().expect("player");
                let start = Instant::now();
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    smol::Timer::at(start + Duration::from_millis(20) * k).await;
                    let phase = std::f64::consts::TAU * 440.0 * f64::from(k) * FRAME_SAMPLES as f64
                        / f64::from(SAMPLE_RATE);
                    let pcm: [i16; FRAME_SAMPLES] = sine(440.0, 10000.0, FRAME_SAMPLES, phase)
                        .try_into()
                        .unwrap();
                    let _ = conn.send_pcm(&pcm).await;
                    k += 1;
                    for event in conn.drain() {
                        if let VoiceEvent::Audio(frame) = event {
                            let now = Instant::now();
                            let mut got = heard.lock().unwrap();
                            for pcm in player.play(&frame) {
                                got.push((now, pcm.to_vec()));
                            }
                        }
                    }
                }
            })
        })
    };
    // Bob in the browser.
    let ticket: Value = block_on(api_json(
        &bob,
        "POST",
        &server.url(&format!("/api/v1/channels/{voice}/voice")),
        json!({}),
    ));
    let mut child = std::process::Command::new("node")
        .arg("tests/js/web/voice.mjs")
        .arg(&server.origin)
        .arg(ticket["url"].as_str().unwrap())
        .arg(&wav)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    let mut phases: Vec<Value> = Vec::new();
    let mut muted_at = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if value["phase"] == "muted" {
            muted_at = Some(Instant::now());
        }
        phases.push(value);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    stop.store(true, Ordering::Relaxed);
    talker.join().unwrap();
    assert!(status.success(), "node failed: {stderr}\n{phases:?}");
    let phase = |name: &str| {
        phases
            .iter()
            .find(|p| p["phase"] == name)
            .unwrap_or_else(|| panic!("no {name} phase: {phases:?}\n{stderr}"))
            .clone()
    };

    // The browser heard alice's 440 Hz, not its own 1 kHz (mix-minus), and sent audio.
    let h = phase("heard");
    let (p440, p1000, p2500) = (
        h["p440"].as_f64().unwrap(),
        h["p1000"].as_f64().unwrap(),
        h["p2500"].as_f64().unwrap(),
    );
    assert!(
        p440 > 1e-4 && p440 > 30.0 * p2500 && p440 > 30.0 * p1000,
        "browser heard {h}"
    );
    assert!(h["stats"]["framesSent"].as_u64().unwrap() > 50, "{h}");
    assert!(h["stats"]["framesDecoded"].as_u64().unwrap() > 50, "{h}");

    // Alice heard the browser's 1 kHz before the mute, and nothing from a second after it.
    let muted_at = muted_at.expect("the page muted");
    let got = heard.lock().unwrap();
    let before: Vec<i16> = got
        .iter()
        .filter(|(t, _)| *t < muted_at)
        .flat_map(|(_, pcm)| pcm.clone())
        .collect();
    let tail = &before[before.len().saturating_sub(SAMPLE_RATE as usize)..];
    let (t1000, t440) = (
        tone_power(tail, 1000.0, SAMPLE_RATE),
        tone_power(tail, 440.0, SAMPLE_RATE),
    );
    assert!(
        t1000 > 1e-3 && t1000 > 100.0 * t440,
        "alice heard 1 kHz {t1000}, 440 Hz {t440}"
    );
    let after = got
        .iter()
        .filter(|(t, _)| *t > muted_at + Duration::from_millis(700))
        .flat_map(|(_, pcm)| pcm.iter().map(|s| i64::from(*s).abs()))
        .max()
        .unwrap_or(0);
    assert!(
        after < 300,
        "alice still heard the muted browser (peak {after})"
    );
    drop(got);

    // Leaving left the room; a bad ticket is refused with 4001.
    let left = block_on(eventually(Duration::from_secs(5), async || {
        let list = api_json(
            &alice,
            "GET",
            &server.url(&format!("/api/v1/channels/{voice}/voice")),
            json!({}),
        )
        .await;
        list.as_array().unwrap().len() == 1
    }));
    assert!(left, "the browser's seat is still taken");
    let bad = phase("bad_ticket");
    assert_eq!(bad["code"], 4001, "{bad}");
}

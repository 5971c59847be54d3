//! A scripted CrowdSec Local API, for what only a hostile or broken LAPI
//! does (and for streams too big to put into a real one quickly): it
//! answers each request by the first rule of a JSON script that matches
//! it, re-read at every request so a test can change the LAPI's mind
//! mid-test, and appends one line per request to a log.
//!
//! usage: bg-lapi ADDR:PORT SCRIPT LOG
//!
//! SCRIPT: `[{"method": "GET", "path": "/v1/decisions/stream", "status":
//! 200, "headers": [["Location", "http://..."]], "body": "...",
//! "generate": {"list": "new", "count": 1000000, "first": 0, "duration":
//! "4h"}, "delay_ms": 0, "times": 1}]`. `path` matches a prefix of the
//! request's path (without its query); `generate` streams a decision list
//! of addresses 10.x.y.z from index `first` (chunked, never held whole);
//! `times` limits how often a rule answers. LOG lines: "METHOD TARGET
//! key=yes|no auth=yes|no".
//!
//! Runs inside the test's network namespace, on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bg-lapi ADDR:PORT SCRIPT LOG");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let (script, log) = (args[2].clone(), args[3].clone());
    let mut served: Vec<u64> = Vec::new();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if let Err(e) = serve(conn, &script, &log, &mut served) {
            eprintln!("bg-lapi: {e}");
        }
    }
}

fn serve(mut conn: TcpStream, script: &str, log: &str, served: &mut Vec<u64>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (mut length, mut key, mut auth) = (0usize, false, false);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        key |= lower.starts_with("x-api-key:");
        auth |= lower.starts_with("authorization:");
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(
        f,
        "{method} {target} key={} auth={}",
        if key { "yes" } else { "no" },
        if auth { "yes" } else { "no" }
    )?;
    let rules: serde_json::Value = std::fs::read_to_string(script)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let path = target.split('?').next().unwrap_or("");
    let rules = rules.as_array().cloned().unwrap_or_default();
    served.resize(rules.len(), 0);
    let chosen = rules.iter().enumerate().find(|(i, r)| {
        r["method"].as_str().is_none_or(|m| m == method)
            && r["path"].as_str().is_none_or(|p| path.starts_with(p))
            && r["times"].as_u64().is_none_or(|t| served[*i] < t)
    });
    let Some((i, rule)) = chosen else {
        return write!(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    served[i] += 1;
    if let Some(ms) = rule["delay_ms"].as_u64() {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let status = rule["status"].as_u64().unwrap_or(200);
    let mut head =
        format!("HTTP/1.1 {status} Scripted\r\nConnection: close\r\nContent-Type: application/json\r\n");
    for h in rule["headers"].as_array().into_iter().flatten() {
        head.push_str(&format!("{}: {}\r\n", h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or("")));
    }
    let generate = &rule["generate"];
    if generate.is_object() {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        conn.write_all(head.as_bytes())?;
        return stream_decisions(&mut conn, generate);
    }
    let body = rule["body"].as_str().unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())
}

/// `{"new": [...], "deleted": null}` (or the other list), chunk by chunk.
fn stream_decisions(conn: &mut TcpStream, g: &serde_json::Value) -> std::io::Result<()> {
    let list = g["list"].as_str().unwrap_or("new");
    let count = g["count"].as_u64().unwrap_or(0);
    let first = g["first"].as_u64().unwrap_or(0);
    let duration = g["duration"].as_str().unwrap_or("4h");
    let other = if list == "new" { "deleted" } else { "new" };
    let mut chunk = format!("{{\"{other}\":null,\"{list}\":[");
    for n in 0..count {
        let i = first + n;
        if n > 0 {
            chunk.push(',');
        }
        chunk.push_str(&format!(
            "{{\"duration\":\"{duration}\",\"id\":{},\"origin\":\"lists\",\"scenario\":\"bench/list\",\"scope\":\"Ip\",\"type\":\"ban\",\"value\":\"10.{}.{}.{}\"}}",
            i + 1,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
        if chunk.len() > 60_000 {
            write_chunk(conn, &chunk)?;
            chunk.clear();
        }
    }
    chunk.push_str("]}");
    write_chunk(conn, &chunk)?;
    conn.write_all(b"0\r\n\r\n")
}

fn write_chunk(conn: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(conn, "{:x}\r\n{data}\r\n", data.len())
}

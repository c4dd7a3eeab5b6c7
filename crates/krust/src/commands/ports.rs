//! `krust ports`: the services-and-ports table of the effective configuration, in the seed
//! documents' columns, and whether each service is listening now.

use std::process::ExitCode;

use anyhow::Result;
use ports::{listening_sockets, Listening, PortMap, Row, RowJson};
use serde::Serialize;

use crate::cli::{Output, PortsArgs};
use crate::settings::Settings;

pub fn run(args: PortsArgs) -> Result<ExitCode> {
    let map = effective_map(&args)?;
    let listening = listening_sockets();
    match args.output {
        Output::Json => print_json(&map, &listening)?,
        Output::Table => print_table(&map, &listening),
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags win; without them, the layout the server in this data dir was started with; without
/// that, the upstream preset.
fn effective_map(args: &PortsArgs) -> Result<PortMap> {
    let saved = Settings::load(&args.data.data_dir)?;
    let (profile, datastore, mut overrides) = match &saved {
        Some(s) => (s.profile()?, s.datastore_kind(), s.overrides()?),
        None => (Default::default(), Default::default(), Vec::new()),
    };
    let profile = args.layout.profile.unwrap_or(profile);
    if args.layout.profile.is_some() {
        overrides.clear();
    }
    overrides.extend(args.layout.ports.iter().cloned());
    Ok(PortMap::new(profile, datastore, &overrides)?)
}

fn is_listening(row: &Row, listening: &Listening) -> Option<bool> {
    row.listen_port()
        .map(|p| listening.contains(row.protocol(), p))
}

#[derive(Serialize)]
struct JsonRow {
    #[serde(flatten)]
    row: RowJson,
    listening: Option<bool>,
}

#[derive(Serialize)]
struct JsonTable {
    profile: String,
    services: Vec<JsonRow>,
}

fn print_json(map: &PortMap, listening: &Listening) -> Result<()> {
    let services = map
        .rows()
        .map(|r| JsonRow {
            row: r.into(),
            listening: is_listening(r, listening),
        })
        .collect();
    let table = JsonTable {
        profile: map.profile().to_string(),
        services,
    };
    println!("{}", serde_json::to_string_pretty(&table)?);
    Ok(())
}

fn print_table(map: &PortMap, listening: &Listening) {
    let header = [
        "PORT",
        "PROTOCOL",
        "BIND",
        "SERVICE",
        "LISTENING",
        "ACCESS RESTRICTION",
    ];
    let rows: Vec<[String; 6]> = map.rows().map(|r| table_row(r, listening)).collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!("profile: {}", map.profile());
    for cells in std::iter::once(header.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            match widths.get(i) {
                Some(w) => line.push_str(&format!("{cell:<w$}  ")),
                None => line.push_str(cell),
            }
        }
        println!("{}", line.trim_end());
    }
}

fn table_row(r: &Row, listening: &Listening) -> [String; 6] {
    let mut service = r.service.description().to_string();
    if r.service.is_unauthenticated() {
        service.push_str(" [unauthenticated]");
    }
    let port = if r.enabled {
        r.port.to_string()
    } else {
        format!("off ({})", r.port)
    };
    let listening = match is_listening(r, listening) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    [
        port,
        r.protocol().to_string(),
        r.bind.to_string(),
        service,
        listening.to_string(),
        r.service.access().to_string(),
    ]
}

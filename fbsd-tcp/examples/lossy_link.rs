//! Moves data between two fbsd-tcp stacks over the simulated lossy link, in virtual time, and
//! prints progress and a summary: virtual time, goodput, retransmissions, SACK recoveries, and
//! the SHA-256 of what was sent and what arrived. Exits non-zero unless they match.
//!
//! ```text
//! cargo run --release -p fbsd-tcp --example lossy_link -- [--loss P] [--size BYTES] [--seed N]
//!     [--delay-ms N] [--mtu N] [--path-mtu N] [--bandwidth-mbps N] [--reorder P]
//!     [--reorder-us N] [--jitter-us N] [--duplicate P] [--corrupt P] [--cc reno|cubic]
//!     [--no-sack] [--one-way]
//! ```

use std::process::ExitCode;
use std::time::Instant as WallInstant;

use fbsd_tcp::sim::{Bulk, Impairments, Link, Pair, Side};
use fbsd_tcp::socket::tcp::CongestionAlgorithm;
use fbsd_tcp::time::Duration;
use sha2::{Digest, Sha256};

const USAGE: &str = "\
usage: lossy_link [options]
  --loss P             probability a frame is lost, 0..1 or a percentage like 2% (default 5%)
  --size BYTES         bytes to move, with an optional k/M/G (binary) suffix (default 64M)
  --seed N             seed of the impairment model and the payload (default 1)
  --delay-ms N         one-way delay in milliseconds (default 5)
  --mtu N              the stacks' IP MTU (default 1500)
  --path-mtu N         IP MTU of a router in the middle (default: none)
  --bandwidth-mbps N   link rate in Mbit/s, 0 for unlimited (default 1000)
  --reorder P          probability a frame is held back (default 1%)
  --reorder-us N       how long, in microseconds (default 30)
  --jitter-us N        largest extra one-way delay, in microseconds (default 100); never
                       reorders on its own
  --duplicate P        probability a frame arrives twice (default 0.2%)
  --corrupt P          probability one bit of a frame is flipped (default 0)
  --cc reno|cubic      congestion control (default cubic)
  --no-sack            turn SACK off on both stacks
  --one-way            move --size bytes from A to B only (default: each way at once)";

struct Options {
    loss: f64,
    size: u64,
    seed: u64,
    delay: Duration,
    mtu: usize,
    path_mtu: Option<usize>,
    bandwidth_bps: Option<u64>,
    reorder: f64,
    reorder_delay: Duration,
    jitter: Duration,
    duplicate: f64,
    corrupt: f64,
    congestion: CongestionAlgorithm,
    sack: bool,
    both_ways: bool,
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent, 0.01),
        None => (text, 1.0),
    };
    let value: f64 = number.parse().map_err(|_| format!("not a probability: {text}"))?;
    let value = value * scale;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("probability out of range: {text}"))
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim_end_matches(['B', 'i']);
    let (number, shift) = match trimmed.chars().last() {
        Some('k' | 'K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('m' | 'M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('g' | 'G') => (&trimmed[..trimmed.len() - 1], 30),
        _ => (trimmed, 0),
    };
    let value: u64 = number.parse().map_err(|_| format!("not a size: {text}"))?;
    value
        .checked_shl(shift)
        .filter(|v| v >> shift == value)
        .ok_or(format!("size too large: {text}"))
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{flag}: not a number: {text}"))
}

/// The options, or `None` for `--help`.
fn parse_args() -> Result<Option<Options>, String> {
    let mut options = Options {
        loss: 0.05,
        size: 64 << 20,
        seed: 1,
        delay: Duration::from_millis(5),
        mtu: 1500,
        path_mtu: None,
        bandwidth_bps: Some(1_000_000_000),
        reorder: 0.01,
        reorder_delay: Duration::from_micros(30),
        jitter: Duration::from_micros(100),
        duplicate: 0.002,
        corrupt: 0.0,
        congestion: CongestionAlgorithm::Cubic,
        sack: true,
        both_ways: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--loss" => options.loss = parse_probability(&value()?)?,
            "--size" => options.size = parse_size(&value()?)?,
            "--seed" => options.seed = parse_number(&flag, &value()?)?,
            "--delay-ms" => options.delay = Duration::from_millis(parse_number(&flag, &value()?)?),
            "--mtu" => options.mtu = parse_number(&flag, &value()?)?,
            "--path-mtu" => options.path_mtu = Some(parse_number(&flag, &value()?)?),
            "--bandwidth-mbps" => {
                let mbps: u64 = parse_number(&flag, &value()?)?;
                options.bandwidth_bps = (mbps > 0).then(|| mbps * 1_000_000);
            }
            "--reorder" => options.reorder = parse_probability(&value()?)?,
            "--reorder-us" => {
                options.reorder_delay = Duration::from_micros(parse_number(&flag, &value()?)?);
            }
            "--jitter-us" => {
                options.jitter = Duration::from_micros(parse_number(&flag, &value()?)?)
            }
            "--duplicate" => options.duplicate = parse_probability(&value()?)?,
            "--corrupt" => options.corrupt = parse_probability(&value()?)?,
            "--cc" => {
                let name = value()?;
                options.congestion = CongestionAlgorithm::from_name(&name)
                    .ok_or(format!("--cc: unknown algorithm {name}"))?;
            }
            "--no-sack" => options.sack = false,
            "--one-way" => options.both_ways = false,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !(576..=9000).contains(&options.mtu) {
        return Err(format!("--mtu {} is outside 576..=9000", options.mtu));
    }
    Ok(Some(options))
}

/// One transfer with the hashes of both of its ends.
struct Run {
    bulk: Bulk,
    sent: Sha256,
    received: Sha256,
    next_report: u64,
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("lossy_link: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let rtt = 2 * options.delay;
    let bdp = options
        .bandwidth_bps
        .map_or(4 << 20, |bps| (bps as f64 / 8.0 * rtt.as_secs_f64()) as usize);
    let impairments = Impairments {
        loss: options.loss,
        duplicate: options.duplicate,
        reorder: options.reorder,
        reorder_delay: options.reorder_delay,
        delay: options.delay,
        jitter: options.jitter,
        corrupt: options.corrupt,
        path_mtu: options.path_mtu,
        bandwidth_bps: options.bandwidth_bps,
        queue_bytes: (bdp * 8 / 5).max(64 << 10),
    };
    let link = match Link::symmetric(options.seed, impairments.clone()) {
        Ok(link) => link,
        Err(error) => {
            eprintln!("lossy_link: {error}");
            return ExitCode::from(2);
        }
    };
    // Buffers that hold the pipe and its queue, so the window does not cap the rate.
    let buffer = (bdp * 3).clamp(256 << 10, 64 << 20);
    let configs = [Side::A, Side::B].map(|side| {
        let mut config = Pair::config(side);
        config.mtu = options.mtu;
        config.tcp.send_buffer = buffer;
        config.tcp.recv_buffer = buffer;
        config.tcp.congestion = options.congestion;
        config.tcp.sack = options.sack;
        config
    });
    let [config_a, config_b] = configs;
    let mut pair = Pair::with_configs(config_a, config_b, link);

    println!(
        "lossy_link: {} bytes {}, loss {:.2}%, reorder {:.2}% by {} us, duplicate {:.2}%, \
         corrupt {:.2}%, delay {} ms + {} us jitter each way, {}, MTU {}{}, {} {}, seed {}",
        options.size,
        if options.both_ways { "each way" } else { "A→B" },
        options.loss * 100.0,
        options.reorder * 100.0,
        options.reorder_delay.as_micros(),
        options.duplicate * 100.0,
        options.corrupt * 100.0,
        options.delay.as_millis(),
        options.jitter.as_micros(),
        options
            .bandwidth_bps
            .map_or("unlimited rate".to_string(), |bps| format!("{} Mbit/s", bps / 1_000_000)),
        options.mtu,
        options.path_mtu.map_or(String::new(), |mtu| format!(" (path MTU {mtu})")),
        options.congestion.name(),
        if options.sack { "with SACK" } else { "without SACK" },
        options.seed,
    );

    let mut runs = vec![Run {
        bulk: Bulk::new(Side::A, 5001, options.size, options.seed),
        sent: Sha256::new(),
        received: Sha256::new(),
        next_report: 0,
    }];
    if options.both_ways {
        runs.push(Run {
            bulk: Bulk::new(Side::B, 5002, options.size, !options.seed),
            sent: Sha256::new(),
            received: Sha256::new(),
            next_report: 0,
        });
    }
    let step = (options.size / 10).max(1);
    let wall = WallInstant::now();
    let outcome = pair.drive_until(Duration::from_secs(24 * 3600), |pair, events| {
        let mut all_done = true;
        for run in &mut runs {
            let from = run.bulk.from();
            let (sent, received) = (&mut run.sent, &mut run.received);
            all_done &= run.bulk.poll(pair, events, &mut |side, bytes: &[u8]| {
                if side == from {
                    sent.update(bytes)
                } else {
                    received.update(bytes)
                }
            });
            if run.bulk.received() >= run.next_report && run.bulk.received() < run.bulk.size() {
                let elapsed = (pair.now() - run.bulk.started_at()).as_secs_f64();
                let info = run.bulk.sender().and_then(|h| pair.stack(from).tcp_info(h).ok());
                println!(
                    "  {:?}→ {:5.1}% at {:8.3} s virtual, {:8.1} Mbit/s so far{}",
                    from,
                    run.bulk.received() as f64 * 100.0 / run.bulk.size() as f64,
                    elapsed,
                    if elapsed > 0.0 {
                        run.bulk.received() as f64 * 8.0 / elapsed / 1e6
                    } else {
                        0.0
                    },
                    info.map_or(String::new(), |info| format!(
                        ", cwnd {} KiB, srtt {:.1} ms, {} retransmits",
                        info.snd_cwnd >> 10,
                        info.rtt.as_secs_f64() * 1e3,
                        info.total_retrans
                    )),
                );
                run.next_report = (run.bulk.received() / step + 1) * step;
            }
        }
        all_done
    });
    let wall = wall.elapsed();

    let mut ok = true;
    if let Err(error) = outcome {
        println!("FAILED: {error}");
        ok = false;
    }
    for run in runs {
        let bulk = &run.bulk;
        let sent: [u8; 32] = run.sent.finalize().into();
        let received: [u8; 32] = run.received.finalize().into();
        let hashes_match = sent == received && bulk.received() == bulk.size();
        ok &= hashes_match && bulk.error().is_none() && bulk.first_mismatch().is_none();
        println!("{:?}→{:?}:", bulk.from(), bulk.from().peer());
        if let Some(error) = bulk.error() {
            println!("  error:            {error}");
        }
        if let Some(offset) = bulk.first_mismatch() {
            println!("  first bad byte:   at offset {offset}");
        }
        println!("  received:         {} of {} bytes", bulk.received(), bulk.size());
        if let (Some(elapsed), Some(goodput)) = (bulk.elapsed(), bulk.goodput_bps()) {
            println!("  virtual time:     {:.3} s", elapsed.as_secs_f64());
            println!("  goodput:          {:.1} Mbit/s", goodput / 1e6);
        }
        if let Some(info) = bulk.sender_info() {
            println!("  retransmits:      {}", info.total_retrans);
            println!(
                "  SACK recoveries:  {} fast recoveries{}",
                info.fast_recoveries,
                if info.sack { "" } else { " (SACK off)" }
            );
            println!("  RTOs:             {}", info.timeouts);
            println!("  MSS:              {}", info.snd_mss);
        }
        let link = pair.link().counters(bulk.from());
        println!(
            "  link:             {} frames sent, {} lost, {} duplicated, {} reordered, {} corrupted, \
             {} queue drops, {} fragmented, {} frag-needed",
            link.frames_sent,
            link.lost,
            link.duplicated,
            link.reordered,
            link.corrupted,
            link.queue_drops,
            link.fragmented,
            link.frag_needed_sent
        );
        println!("  sha256 sent:      {}", hex(&sent));
        println!("  sha256 received:  {}", hex(&received));
        println!("  match:            {}", if hashes_match { "yes" } else { "NO" });
    }
    println!("wall time {:.2} s, {} steps", wall.as_secs_f64(), pair.steps());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

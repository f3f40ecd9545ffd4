//! The `hearth` command: run the server, or administer one (running or not).

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use hearth::admin::{self, Command};
use hearth::app::{self, App};
use hearth::auth::{keywrap, password::PasswordParams};
use hearth::config::{Config, ConfigSource, LogLevel};
use hearth::model::Id;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "A federated chat appliance for home hardware"
)]
struct Cli {
    /// Configuration file (TOML), which must exist. Default: /etc/hearth/hearth.toml (or
    /// the file $HEARTH_CONFIG names) when it exists, else the embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides the config).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the server.
    Serve {
        /// Address to listen on (overrides the config).
        #[arg(long)]
        listen: Option<String>,
        /// Least severe log messages written: error, warn, info, debug or trace
        /// (overrides `[log] level` in the config).
        #[arg(long)]
        log_level: Option<LogLevel>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage invites.
    Invite {
        #[command(subcommand)]
        command: InviteCommand,
    },
    /// Manage federation peers.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// List the pinned peers and the Hearth servers heard on the LAN.
    Peers,
    /// List server-to-server calls waiting for delivery (peer down, retrying).
    Outbox,
    /// Print the setup code that claiming this box from a browser needs.
    SetupCode,
    /// Write a consistent copy of the database to FILE, or with --archive a whole backup
    /// (database, files, TLS, configuration) that `hearth restore` takes back (works while
    /// the server runs).
    Backup {
        /// Destination file of a database copy.
        #[arg(required_unless_present = "archive", conflicts_with = "archive")]
        file: Option<PathBuf>,
        /// Write a backup archive (.tar.gz) to this file.
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
    },
    /// Restore a backup archive into the data directory (checked completely first; the
    /// server must be stopped; a directory holding data needs --force).
    Restore {
        /// The archive, as `hearth backup --archive` or the admin API wrote it.
        archive: PathBuf,
        /// Replace the data of a directory that holds some.
        #[arg(long)]
        force: bool,
    },
    /// Write the portable export (JSON lines: every row, file and key), which any later
    /// Hearth imports whatever becomes of the database's file format.
    Export {
        /// Destination file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Import a portable export into an empty data directory (--data).
    Import {
        /// The export, as `hearth export` wrote it.
        file: PathBuf,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file (default: the one the server would read): unknown
    /// settings, wrong types, values out of range. Exits 1 on any problem.
    Check {
        /// The file (default: --config, else /etc/hearth/hearth.toml or $HEARTH_CONFIG).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account usable with the password grant.
    Add {
        /// Login name.
        name: String,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum PeerCommand {
    /// Pin a server's key (fetched from its /.well-known/hearth) and allow its users.
    Add {
        /// The server's URL, e.g. http://hearth-b.local:8080.
        url: String,
        /// Refuse unless the key's fingerprint is this (as its admin reads it to you).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Pin the key the server announced on the LAN (see `peer discovered`) instead of
        /// fetching it; needs --fingerprint.
        #[arg(long, requires = "fingerprint")]
        discovered: bool,
    },
    /// List the Hearth servers heard on the LAN (mDNS): fingerprints, peers, conflicts.
    Discovered,
    /// Forget a peer.
    Remove {
        /// The server's URL.
        url: String,
    },
    /// List peers and their key fingerprints.
    List,
}

#[derive(Subcommand)]
enum InviteCommand {
    /// Create an invite link to a guild.
    Create {
        /// Guild id.
        #[arg(long)]
        guild: String,
        /// Channel id (default: the first text channel).
        #[arg(long)]
        channel: Option<String>,
        /// Number of uses (default unlimited).
        #[arg(long)]
        max_uses: Option<u32>,
        /// Lifetime in seconds (default 7 days; 0 = forever).
        #[arg(long)]
        max_age: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    return_big_allocations_to_the_system();
    few_malloc_arenas();
    one_thread_for_continue_answers();
    let cli = Cli::parse();
    if let Commands::Config {
        command: ConfigCommand::Check { file },
    } = &cli.command
    {
        return check_config(file.as_deref().or(cli.config.as_deref()));
    }
    let (mut config, source) = Config::locate(cli.config.as_deref())?;
    let problems = config.problems();
    if !problems.is_empty() {
        bail!(
            "invalid configuration in {}:\n  {}",
            source
                .file()
                .map_or("the defaults".into(), |p| p.display().to_string()),
            problems.join("\n  ")
        );
    }
    let data_dir_chosen = cli.data.is_some() || source.file().is_some();
    if let Some(data) = cli.data {
        config.data_dir = data;
    }
    if let (false, ConfigSource::Defaults { looked_at }, false) = (
        data_dir_chosen,
        &source,
        matches!(cli.command, Commands::Serve { .. }) || config.data_dir.exists(),
    ) {
        // An administration command on no configuration would make a fresh data
        // directory here that no server ever reads.
        bail!(
            "no configuration at {} and no data directory at {}: pass --config FILE or \
             --data DIR (the server's, e.g. /var/lib/hearth)",
            looked_at.display(),
            config.data_dir.display()
        );
    }
    if let Commands::Serve {
        log_level: Some(level),
        ..
    } = cli.command
    {
        config.log.level = level;
    }
    // Every command, not only `serve`: the library's messages (e.g. TLS pins it cannot
    // save during `peer add`) are logged too.
    hearth::logging::init(config.log.level)?;
    match cli.command {
        Commands::Serve { listen, .. } => {
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config)
        }
        Commands::User {
            command:
                UserCommand::Add {
                    name,
                    password_stdin,
                    admin,
                },
        } => {
            if !password_stdin {
                bail!("pass the password on standard input with --password-stdin");
            }
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let password = input.lines().next().unwrap_or("").to_string();
            let identity = hearth::auth::jose::SigningKey::generate_ed25519();
            let hearth::auth::jose::SigningKey::EdDsa(secret) = &identity else {
                unreachable!("generate_ed25519 makes an Ed25519 key");
            };
            let identity_key =
                hearth::auth::device_cert::user_id_from_public(&secret.verifying_key().to_bytes());
            let params = PasswordParams {
                m_cost_kib: config.auth.argon2_memory_kib,
                t_cost: config.auth.argon2_iterations,
                p_cost: 1,
            };
            // K_id leaves this process only wrapped under the password.
            let key_backup = keywrap::wrap_secret(&secret.to_bytes(), &password, &params)
                .map_err(|e| anyhow!("cannot wrap the identity key: {e}"))?;
            let answer = run_admin(
                &config,
                Command::AddUser {
                    username: name,
                    password,
                    identity_key,
                    key_backup,
                    admin,
                },
            )?;
            println!(
                "created user {} ({})",
                answer["username"].as_str().unwrap_or(""),
                answer["id"].as_str().unwrap_or("")
            );
            Ok(())
        }
        Commands::Invite {
            command:
                InviteCommand::Create {
                    guild,
                    channel,
                    max_uses,
                    max_age,
                },
        } => {
            let guild = Id::parse(&guild).ok_or_else(|| anyhow!("--guild must be a guild id"))?;
            let channel = channel
                .map(|c| Id::parse(&c).ok_or_else(|| anyhow!("--channel must be a channel id")))
                .transpose()?;
            let answer = run_admin(
                &config,
                Command::CreateInvite {
                    guild,
                    channel,
                    max_uses,
                    max_age_secs: max_age,
                },
            )?;
            println!("{}", answer["url"].as_str().unwrap_or(""));
            Ok(())
        }
        Commands::Peer { command } => {
            let (command, list) = match command {
                PeerCommand::Add {
                    url,
                    fingerprint: Some(fingerprint),
                    discovered: true,
                } => (
                    Command::AddDiscoveredPeer {
                        origin: url,
                        fingerprint,
                    },
                    false,
                ),
                PeerCommand::Add {
                    url, fingerprint, ..
                } => (Command::AddPeer { url, fingerprint }, false),
                PeerCommand::Discovered => {
                    let answer = run_admin(&config, Command::ListDiscovered)?;
                    print!("{}", hearth::lan::heard::format_listing(&answer));
                    return Ok(());
                }
                PeerCommand::Remove { url } => (Command::RemovePeer { url }, false),
                PeerCommand::List => (Command::ListPeers, true),
            };
            let answer = run_admin(&config, command)?;
            let peers = if list {
                answer.as_array().cloned().unwrap_or_default()
            } else {
                vec![answer]
            };
            for peer in peers {
                if let Some(origin) = peer["origin"].as_str() {
                    println!(
                        "{origin}  {}  key fingerprint {}",
                        peer["name"].as_str().unwrap_or(""),
                        peer["fingerprint"].as_str().unwrap_or("")
                    );
                } else if let Some(removed) = peer["removed"].as_str() {
                    println!("removed {removed}");
                }
            }
            Ok(())
        }
        Commands::Peers => {
            let pinned = run_admin(&config, Command::ListPeers)?;
            let pinned = pinned.as_array().cloned().unwrap_or_default();
            if pinned.is_empty() {
                println!("Pinned peers: none (add one with `hearth peer add URL`)");
            } else {
                println!("Pinned peers:");
                for peer in pinned {
                    println!(
                        "  {}  {}  key fingerprint {}",
                        peer["origin"].as_str().unwrap_or(""),
                        peer["name"].as_str().unwrap_or(""),
                        peer["fingerprint"].as_str().unwrap_or("")
                    );
                }
            }
            let answer = run_admin(&config, Command::ListDiscovered)?;
            print!("{}", hearth::lan::heard::format_listing(&answer));
            Ok(())
        }
        Commands::SetupCode => {
            let answer = run_admin(&config, Command::SetupCode)?;
            match answer["code"].as_str() {
                Some(code) => println!("{code}"),
                None if answer["claimed"] == true => {
                    bail!("this box is set up already: it has an administrator")
                }
                None if answer["from_browser"] == false => {
                    bail!("setup from a browser is off ([setup] from_browser = false)")
                }
                None => println!(
                    "no setup code needed: [setup] first_visitor_claims = true lets whoever \
                     opens {} first set it up",
                    answer["origin"].as_str().unwrap_or("the box")
                ),
            }
            Ok(())
        }
        Commands::Outbox => {
            let answer = run_admin(&config, Command::ListOutbox)?;
            let items = answer.as_array().cloned().unwrap_or_default();
            println!("{} call(s) waiting", items.len());
            for item in items {
                println!(
                    "{} {} to {}: {} attempt(s); last error: {}",
                    item["id"].as_str().unwrap_or(""),
                    item["call"].as_str().unwrap_or(""),
                    item["target"].as_str().unwrap_or(""),
                    item["attempts"],
                    item["last_error"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        Commands::Config { .. } => unreachable!("handled before the configuration is read"),
        Commands::Backup {
            file: Some(file), ..
        } => {
            let path = std::path::absolute(&file)?;
            let answer = run_admin(&config, Command::Backup { path: path.clone() })?;
            println!(
                "backup written to {} ({} rows)",
                path.display(),
                answer["rows"]
            );
            Ok(())
        }
        Commands::Backup { archive, .. } => {
            let path = std::path::absolute(archive.context("name a file or --archive FILE")?)?;
            let started = std::time::Instant::now();
            let answer = run_admin(&config, Command::BackupArchive { path: path.clone() })?;
            println!(
                "backup archive written to {} ({} members, {} bytes, in {:.1} s)",
                path.display(),
                answer["members"],
                answer["size"],
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Commands::Restore { archive, force } => {
            refuse_running_server(&config)?;
            let started = std::time::Instant::now();
            let manifest = hearth::storage::archive::restore(&archive, &config.data_dir, force)?;
            println!(
                "restored {:?} (backup of {} unix seconds, schema {}, {} members) into {} in \
                 {:.1} s",
                manifest.box_name,
                manifest.created_at,
                manifest.schema_version,
                manifest.members.len(),
                config.data_dir.display(),
                started.elapsed().as_secs_f64()
            );
            if config
                .data_dir
                .join(hearth::storage::archive::RESTORED_CONFIG)
                .exists()
            {
                println!(
                    "its configuration file is in {}: compare it with yours",
                    config
                        .data_dir
                        .join(hearth::storage::archive::RESTORED_CONFIG)
                        .display()
                );
            }
            Ok(())
        }
        Commands::Export { out } => {
            let path = std::path::absolute(&out)?;
            let answer = run_admin(&config, Command::Export { path: path.clone() })?;
            println!(
                "export written to {} ({} rows, {} files)",
                path.display(),
                answer["rows"],
                answer["files"]
            );
            Ok(())
        }
        Commands::Import { file } => {
            refuse_running_server(&config)?;
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let summary = hearth::storage::export::import(input, &config.data_dir)?;
            println!(
                "imported {} rows and {} files into {}",
                summary.rows,
                summary.files,
                config.data_dir.display()
            );
            Ok(())
        }
    }
}

/// Refuses when a server answers on the data directory's admin socket (the database lock
/// is checked as well by the restore itself).
fn refuse_running_server(config: &Config) -> anyhow::Result<()> {
    let socket = app::admin_socket_path(config);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        bail!(
            "a Hearth server is running on {} (its admin socket answers): stop it first",
            config.data_dir.display()
        );
    }
    Ok(())
}

/// argon2id allocates ~19 MiB per hash. glibc's malloc raises its mmap threshold
/// dynamically and then keeps such blocks in per-thread arenas for good, which measured
/// hundreds of MiB after a burst of logins; a fixed 1 MiB threshold makes every large
/// block an mmap that goes back to the system when freed.
fn return_big_allocations_to_the_system() {
    // SAFETY: mallopt only changes allocator tuning; it is called before other threads
    // exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// glibc gives threads that allocate at the same time arenas of their own, up to eight
/// per core, each keeping freed memory for itself. Two arenas measured about 65 KiB less
/// of the process's own memory after the first requests than the default, and 100 KiB
/// after an upload (docs/measurements.md); one arena saved only 25 KiB more and would put
/// every allocation of every thread behind one lock.
fn few_malloc_arenas() {
    // SAFETY: as above: allocator tuning, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// async-h1 writes the `100 Continue` of a request sent with `Expect: 100-continue` from a
/// task on async-global-executor, its only use of that pool (Hearth's own tasks run on
/// smol's executor). The pool starts at the first such request with one thread per core
/// unless `ASYNC_GLOBAL_EXECUTOR_THREADS` says otherwise; one thread is plenty for that
/// one write. The variable, read when the pool starts, is set rather than calling
/// `async_global_executor::init_with_config`, which would start the thread now, in every
/// server, whether or not a client ever asks for `100 Continue`. A value the operator set
/// is kept. Set before any thread exists, as the environment must only change then.
fn one_thread_for_continue_answers() {
    const THREADS: &str = "ASYNC_GLOBAL_EXECUTOR_THREADS";
    if std::env::var_os(THREADS).is_none() {
        std::env::set_var(THREADS, "1");
    }
}

/// Once the server is up, tells the kernel to drop the pages of the program that only
/// starting it touched. Most of an idle server's memory is the program's own file pages
/// (the code and constant data of opening the database, making or loading the TLS
/// certificate, reading the configuration, ...): on the defaults they were 8.9 of its
/// 10.1 MiB after the first requests. They are clean pages of the executable, so the
/// kernel may drop them and read them again from the file should they be needed; with
/// `MADV_PAGEOUT` it does so now, rather than only under memory pressure, and the idle
/// server measured 6.0 MiB after the same requests (docs/measurements.md). Code that a
/// later request needs comes back from the file (a read from the SD card on a Pi).
///
/// Only the executable's own mappings are touched, never a shared library's or the heap;
/// a kernel older than 5.4 refuses the advice, which changes nothing.
fn drop_startup_pages() {
    let (Ok(exe), Ok(maps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return;
    };
    for line in maps.lines() {
        // "start-end perms offset dev inode path"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [range, _perms, _offset, _dev, _inode, path] = fields[..] else {
            continue;
        };
        if std::path::Path::new(path) != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-').and_then(|(start, end)| {
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        }) else {
            continue;
        };
        // SAFETY: the range is one whole mapping of the executable as the kernel lists
        // it; MADV_PAGEOUT only reclaims its pages (clean file pages, read again on the
        // next access) and never changes what the memory holds.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// `hearth config check`: every problem of the file on standard error, exit 1 if any.
fn check_config(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let path = file.map_or_else(Config::default_path, PathBuf::from);
    let config = match Config::load_file(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let problems = config.problems();
    if problems.is_empty() {
        println!("{}: ok", path.display());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{}: {problem}", path.display());
    }
    std::process::exit(1);
}

/// Sends a command to the running server, or opens the data directory itself.
fn run_admin(config: &Config, command: Command) -> anyhow::Result<serde_json::Value> {
    let socket = app::admin_socket_path(config);
    let sent = admin::send(&socket, &command).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow!(
                "the admin socket {} is not open to this user ({e}): run as root or as \
                 the server's user (`runuser -u hearth -- hearth ...`)",
                socket.display()
            )
        } else {
            anyhow!(
                "cannot talk to the running server through {}: {e}",
                socket.display()
            )
        }
    })?;
    if let Some(answer) = sent {
        return answer.map_err(|e| anyhow!(e));
    }
    refuse_to_leave_root_files(config)?;
    let listen: std::net::SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("listen address {} is not host:port", config.listen))?;
    let scheme = app::scheme_of(config);
    // The origin the server uses: for a wildcard listen without public_url, the one it
    // kept in the data directory (or the name announced now, before its first start).
    let origin = match &config.public_url {
        None => hearth::lan::names::default_origin(
            &config.data_dir,
            scheme,
            listen,
            hearth::lan::names::announced_name,
        ),
        Some(_) => None,
    }
    .unwrap_or_else(|| app::origin_for(config, listen));
    let app = App::open(config.clone(), origin, scheme).with_context(|| {
        if socket.exists() {
            // A socket file nobody answers on: a crashed server left it, or a running one
            // lost it; in the second case the database is locked by that server.
            format!(
                "opening the data directory {} (the admin socket {} is there but no server \
                 answered on it)",
                config.data_dir.display(),
                socket.display()
            )
        } else {
            format!("opening the data directory {}", config.data_dir.display())
        }
    })?;
    smol::block_on(admin::execute(&app, command)).map_err(|e| anyhow!(e))
}

/// With no server running, the CLI opens the database itself; as root in a data directory
/// another user owns (the service's), files it made would be root's and the server could
/// not open them at its next start.
fn refuse_to_leave_root_files(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let Ok(meta) = std::fs::metadata(&config.data_dir) else {
        return Ok(());
    };
    if root && meta.uid() != 0 {
        bail!(
            "no server is running on {} and it belongs to uid {}: run this as that user \
             (e.g. `runuser -u hearth -- hearth ...`) or start the server first, so that \
             root does not leave files the server cannot open",
            config.data_dir.display(),
            meta.uid()
        );
    }
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Every connection is a file descriptor: take the whole hard limit (the connection
    // caps are kept below it; see `http::serve`).
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        log::warn!("cannot raise the open-file limit: {e}");
    }
    let listener = smol::block_on(smol::net::TcpListener::bind(config.listen.as_str()))
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let scheme = app::scheme_of(&config);
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let stopping_flag = stopping.clone();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopping_flag.store(true, Ordering::SeqCst);
            service_manager::stopping();
            let _ = stop.try_send(());
        }
    });
    let data_dir = config.data_dir.clone();
    smol::block_on(hearth::server::run_with(
        listener,
        config,
        async move {
            let _ = stopped.recv().await;
        },
        |origin| {
            log::info!(
                "listening on {scheme}://{local} as {origin} (data in {})",
                data_dir.display()
            );
            service_manager::ready(origin, local, scheme, stopping);
            drop_startup_pages();
        },
    ))?;
    log::info!("stopped");
    Ok(())
}

/// Talking to systemd when it runs `hearth serve` as a `Type=notify` service
/// (`systemd/hearth.service`): readiness, stopping, and watchdog pings that stop when the
/// server stops answering. Everything here is inert unless systemd set `NOTIFY_SOCKET`.
mod service_manager {
    use sd_notify::NotifyState;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn active() -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }

    fn notify(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            log::error!("cannot notify systemd: {e}");
        }
    }

    /// The server is open and its listener bound: sends `READY=1` with a status naming the
    /// origin and, when systemd watches us (`WatchdogSec=`), starts the health checker.
    pub fn ready(origin: &str, local: SocketAddr, scheme: &str, stopping: Arc<AtomicBool>) {
        if !active() || stopping.load(Ordering::SeqCst) {
            return;
        }
        let status = format!("serving {origin} (listening on {local})");
        notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        let Some(timeout) = sd_notify::watchdog_enabled() else {
            return;
        };
        let url = format!("{scheme}://{}/.well-known/hearth", probe_address(local));
        let started = std::thread::Builder::new()
            .name("hearth-watchdog".into())
            .spawn(move || watchdog(&url, timeout, &stopping));
        if let Err(e) = started {
            // No pings means systemd restarts us: better than running unwatched.
            log::error!("cannot start the watchdog thread: {e}");
        }
    }

    /// Shutdown has begun (a signal arrived).
    pub fn stopping() {
        if active() {
            notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
    }

    /// Where this box reaches its own listener: loopback for a wildcard bind.
    fn probe_address(local: SocketAddr) -> SocketAddr {
        let ip = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, local.port())
    }

    /// Pings `WATCHDOG=1` every half `timeout`, each time only after the server answered
    /// `GET /.well-known/hearth` on a fresh connection within a quarter of `timeout`: the
    /// accept loop, the TLS handshake, the connection executor and the router all had to
    /// work. A wedged server thus misses pings and systemd restarts it; a probe that is
    /// merely slow still leaves successive pings at most ¾ `timeout` apart.
    fn watchdog(url: &str, timeout: Duration, stopping: &AtomicBool) {
        let period = timeout / 2;
        let limit = timeout / 4;
        let mut next = Instant::now();
        loop {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            match smol::block_on(check(url, limit)) {
                Ok(()) if !stopping.load(Ordering::SeqCst) => notify(&[NotifyState::Watchdog]),
                Ok(()) => return,
                Err(e) => {
                    log::error!("health check of {url} failed ({e}); not pinging the watchdog")
                }
            }
            next += period;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }

    async fn check(url: &str, limit: Duration) -> Result<(), String> {
        use futures_lite::FutureExt;
        let probe = async {
            // A new client each time: a new connection, so the accept loop is tested too.
            let answer = hearth::client::Client::new()
                .send(url, "GET", None, false)
                .await
                .map_err(|e| e.to_string())?;
            match answer.status {
                200 => Ok(()),
                status => Err(format!("status {status}")),
            }
        };
        probe
            .or(async {
                smol::Timer::after(limit).await;
                Err(format!("no answer within {limit:?}"))
            })
            .await
    }
}

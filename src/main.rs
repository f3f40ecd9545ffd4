//! The `hearth` command: run the server, or administer one (running or not).

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use hearth::admin::{self, Command};
use hearth::app::{self, App};
use hearth::auth::{keywrap, password::PasswordParams};
use hearth::config::Config;
use hearth::model::Id;
use std::io::Read;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "A federated chat appliance for home hardware"
)]
struct Cli {
    /// Configuration file (TOML); missing means embedded defaults.
    #[arg(long, global = true, default_value = "hearth.toml")]
    config: PathBuf,
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
    /// List server-to-server calls waiting for delivery (peer down, retrying).
    Outbox,
    /// Write a consistent copy of the database to FILE (works while the server runs).
    Backup {
        /// Destination file.
        file: PathBuf,
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
    },
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
    let cli = Cli::parse();
    let mut config = Config::load(&cli.config)?;
    if let Some(data) = cli.data {
        config.data_dir = data;
    }
    match cli.command {
        Commands::Serve { listen } => {
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
                PeerCommand::Add { url, fingerprint } => {
                    (Command::AddPeer { url, fingerprint }, false)
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
        Commands::Backup { file } => {
            let path = std::path::absolute(&file)?;
            let answer = run_admin(&config, Command::Backup { path: path.clone() })?;
            println!(
                "backup written to {} ({} rows)",
                path.display(),
                answer["rows"]
            );
            Ok(())
        }
    }
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

/// Sends a command to the running server, or opens the data directory itself.
fn run_admin(config: &Config, command: Command) -> anyhow::Result<serde_json::Value> {
    let socket = app::admin_socket_path(config);
    if let Some(answer) = admin::send(&socket, &command).context("talking to the running server")? {
        return answer.map_err(|e| anyhow!(e));
    }
    let listen: std::net::SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("listen address {} is not host:port", config.listen))?;
    let origin = app::origin_for(config, listen);
    let app = App::open(config.clone(), origin, "http").context("opening the data directory")?;
    smol::block_on(admin::execute(&app, command)).map_err(|e| anyhow!(e))
}

fn serve(config: Config) -> anyhow::Result<()> {
    let listener = smol::block_on(smol::net::TcpListener::bind(config.listen.as_str()))
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local = listener.local_addr()?;
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop.try_send(());
        }
    });
    let data_dir = config.data_dir.clone();
    smol::block_on(app::run_with(
        listener,
        config,
        async move {
            let _ = stopped.recv().await;
        },
        |origin| {
            eprintln!(
                "hearth: listening on http://{local} as {origin} (data in {})",
                data_dir.display()
            )
        },
    ))?;
    eprintln!("hearth: stopped");
    Ok(())
}

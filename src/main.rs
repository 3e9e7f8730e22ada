//! The `kyros` command: serve the API, run migrations, administer users.

#![forbid(unsafe_code)]

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kyros::auth::accounts::{self, AccountError, CreateUser};
use kyros::config::{ConfigError, Environment, Settings};
use kyros::model::Role;
use kyros::state::{AppState, LogFilterReload};
use kyros::store::users::{self};
use secrecy::SecretString;

/// mimalloc instead of the system allocator: password hashing allocates a 19 MiB block per hash
/// on whichever blocking thread runs it, and glibc's per-thread arenas keep such blocks after they
/// are freed (RSS grew by hundreds of MiB under logins and stayed); mimalloc returns them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kyros", version, about = "Kyros orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (migrations run first).
    Serve {
        /// Address and port to listen on; overrides KYROS_BIND.
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys of agents and services.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Check or print the configuration (environment, `KYROS_CONFIG` file, `_FILE` secrets).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run jobs: claim them from a Kyros service and run COMMAND for each (the job as JSON on
    /// stdin; KYROS_JOB_ID, KYROS_JOB_ATTEMPT, KYROS_JOB_NAME, KYROS_RESULT_FILE in its
    /// environment). The API key (scope jobs:claim) comes from KYROS_AGENT_KEY or
    /// KYROS_AGENT_KEY_FILE, never from the command line.
    Agent(AgentArgs),
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The service, e.g. https://kyros.example.org.
    #[arg(long)]
    server: String,
    /// The agent's name as people see it (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Labels, comma-separated: the agent is handed only jobs whose `requires` it has.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// After SIGTERM/SIGINT: seconds running jobs may take before they are stopped and
    /// released.
    #[arg(long, default_value_t = 30.0)]
    grace_secs: f64,
    /// Seconds from SIGTERM to SIGKILL when a job's command is stopped (cancelled, lease lost,
    /// agent stopping).
    #[arg(long, default_value_t = 10.0)]
    kill_grace_secs: f64,
    /// Seconds between claims when no job is waiting.
    #[arg(long, default_value_t = 2.0)]
    poll_secs: f64,
    /// Seconds between heartbeats (default: a third of the lease, 1 to 10).
    #[arg(long)]
    heartbeat_secs: Option<f64>,
    /// The command to run for each job, and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Seconds from the command line as a duration (negative and non-finite values refused).
fn seconds(name: &str, s: f64) -> Result<std::time::Duration, Failure> {
    std::time::Duration::try_from_secs_f64(s)
        .map_err(|_| Failure::Config(format!("--{name} must be a positive number of seconds")))
}

/// `kyros agent`: logs as text on stderr (`LOG_LEVEL`, default info); no service settings are
/// read (the agent needs no secret but its key).
async fn agent_command(args: AgentArgs) -> Result<(), Failure> {
    kyros::install_crypto_provider();
    let level = std::env::var("LOG_LEVEL")
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(format!("kyros={level}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("kyros=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let key = kyros::worker::key_from_env().map_err(|e| Failure::Config(e.to_string()))?;
    let options = kyros::worker::Options {
        server: args.server,
        name: args.name,
        labels: args.labels,
        concurrency: usize::from(args.concurrency),
        grace: seconds("grace-secs", args.grace_secs)?,
        kill_grace: seconds("kill-grace-secs", args.kill_grace_secs)?,
        poll: seconds("poll-secs", args.poll_secs)?,
        heartbeat: args
            .heartbeat_secs
            .map(|s| seconds("heartbeat-secs", s))
            .transpose()?,
        command: args.command,
    };
    kyros::worker::run(options, key).await.map_err(|e| match e {
        kyros::worker::WorkerError::Key(m) => Failure::Config(m),
        kyros::worker::WorkerError::Setup(m) => Failure::Other(m),
    })
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration without starting: exit 0 when the service would start with
    /// it, 2 (with the variable named) when it would refuse.
    Check,
    /// Print the effective settings: name, value (secrets never: only whether they are set),
    /// source (default, file, env, _FILE) and whether a change applies on reload or restart.
    Show,
    /// Print the annotated example configuration file (every setting with its default).
    Example,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Moderator,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::User => Role::User,
            RoleArg::Moderator => Role::Moderator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is read from a prompt, or from stdin with --password-stdin.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Replace a user's password.
    SetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's role.
    SetRole {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Disable a user: they can no longer log in and their tokens stop working.
    Disable {
        #[arg(long)]
        username: String,
    },
    /// Re-enable a disabled user.
    Enable {
        #[arg(long)]
        username: String,
    },
    /// Lift a lockout caused by failed logins.
    Unlock {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key; the key alone is printed on stdout (it is shown only this once).
    Create {
        /// Username of the owner; the key never does more than the owner's role allows.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: jobs:read, jobs:write, jobs:claim, events:read, events:write, admin.
        #[arg(long)]
        scopes: String,
        /// Lifetime in days (1 to 3650); without it the key does not expire.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List keys (tab-separated), of one owner or of everyone.
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

enum Failure {
    Config(String),
    Other(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e.0)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConfigError>() {
            Ok(c) => Failure::Config(c.0),
            Err(e) => Failure::Other(format!("{e:#}")),
        }
    }
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Self {
        Failure::Other(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(format!("cannot start the runtime: {e}")))
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("kyros: configuration error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(msg)) => {
            eprintln!("kyros: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Starts logging to stderr; the returned function changes the filter (a settings reload of
/// `LOG_LEVEL`).
fn init_logging(settings: &Settings) -> LogFilterReload {
    fn reloader<S: 'static>(
        handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
    ) -> LogFilterReload {
        Box::new(move |filter: &str| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        })
    }
    let filter = tracing_subscriber::EnvFilter::try_new(settings.log_filter())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Text for people at a terminal in local; JSON lines for log pipelines elsewhere.
    let reload = if settings.environment == Environment::Local {
        let builder = builder.with_filter_reloading();
        let reload = reloader(builder.reload_handle());
        builder.init();
        reload
    } else {
        let builder = builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter_reloading();
        let reload = reloader(builder.reload_handle());
        builder.init();
        reload
    };
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    reload
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Config(cmd) = &cli.command {
        return config_command(cmd);
    }
    if let Command::Agent(args) = cli.command {
        return agent_command(args).await;
    }
    let mut settings = Settings::load()?;
    let log_filter = init_logging(&settings);
    match cli.command {
        Command::Config(_) | Command::Agent(_) => unreachable!("answered above"),
        Command::Serve { bind } => {
            if let Some(bind) = bind {
                settings.bind = bind;
            }
            kyros::serve(settings, Some(log_filter)).await?;
        }
        Command::Migrate => {
            let state = AppState::build(settings).await?;
            println!("migrations applied ({})", state.db.engine());
        }
        Command::User(cmd) => {
            let state = AppState::build(settings).await?;
            let result = user_command(state.clone(), cmd).await;
            // The CLI's audit rows are written before the process ends.
            state.audit.flush().await;
            result?
        }
        Command::Apikey(cmd) => {
            let state = AppState::build(settings).await?;
            let result = apikey_command(&state, cmd).await;
            // The CLI's audit rows are written before the process ends.
            state.audit.flush().await;
            result?
        }
    }
    Ok(())
}

/// `kyros config …`: nothing is started, nothing is logged; output on stdout, problems on
/// stderr with exit status 2.
fn config_command(cmd: &ConfigCommand) -> Result<(), Failure> {
    use kyros::config::options;
    match cmd {
        ConfigCommand::Example => {
            print!("{}", options::example_file());
        }
        ConfigCommand::Check => {
            let settings = Settings::load()?;
            check_tls_files(&settings)?;
            for warning in &settings.warnings {
                eprintln!("kyros: warning: {warning}");
            }
            println!(
                "configuration OK (ENVIRONMENT={}, {} settings from the file, {} from the environment, {} from secret files)",
                settings.environment,
                count(&settings, |s| *s == kyros::config::Source::File),
                count(&settings, |s| *s == kyros::config::Source::Env),
                count(&settings, |s| matches!(
                    s,
                    kyros::config::Source::SecretFile(_)
                )),
            );
        }
        ConfigCommand::Show => {
            let settings = Settings::load()?;
            println!("{:<32} {:<40} {:<8} SOURCE", "NAME", "VALUE", "APPLIES");
            for view in kyros::reload::views(&settings) {
                let value = match (&view.value, view.secret, view.set) {
                    (_, true, true) => "(secret, set)".to_owned(),
                    (_, true, false) | (None, false, _) => "(unset)".to_owned(),
                    (Some(v), false, _) => v.clone(),
                };
                println!(
                    "{:<32} {:<40} {:<8} {}",
                    view.name, value, view.applies_on, view.source
                );
            }
        }
    }
    Ok(())
}

fn count(settings: &Settings, pred: impl Fn(&kyros::config::Source) -> bool) -> usize {
    settings.sources.values().filter(|s| pred(s)).count()
}

/// The TLS files must be readable PEM, as `serve` would need them.
fn check_tls_files(settings: &Settings) -> Result<(), Failure> {
    if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
        for (name, path) in [("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)] {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Config(format!(
                    "{name}: {} could not be read ({})",
                    path.display(),
                    e.kind()
                ))
            })?;
            if !text.contains("-----BEGIN ") {
                return Err(Failure::Config(format!(
                    "{name}: {} is not a PEM file",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

async fn user_command(state: AppState, cmd: UserCommand) -> Result<(), Failure> {
    use kyros::audit::Actor;
    match cmd {
        UserCommand::Create {
            username,
            email,
            role,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let user = accounts::create_user(
                &state,
                CreateUser {
                    username,
                    email,
                    password,
                    role: role.into(),
                },
                Actor::Cli,
            )
            .await?;
            println!(
                "created user {} ({}, {})",
                user.username, user.id, user.role
            );
        }
        UserCommand::List => {
            println!("id\tusername\temail\trole\tactive\tcreated_at");
            for u in users::list(&state.db).await.map_err(AccountError::from)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    u.id,
                    u.username,
                    u.email,
                    u.role,
                    u.active,
                    u.created_at.to_rfc3339()
                );
            }
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let user = accounts::require_user(&state, &username).await?;
            let password = read_password(password_stdin)?;
            accounts::set_password(&state, &user, password, Actor::Cli).await?;
            println!("password changed for {}", user.username);
        }
        UserCommand::SetRole { username, role } => {
            let user = accounts::require_user(&state, &username).await?;
            accounts::set_role(&state, &user, role.into(), Actor::Cli).await?;
            println!("{} is now {}", user.username, Role::from(role));
        }
        UserCommand::Disable { username } => {
            let user = accounts::require_user(&state, &username).await?;
            accounts::set_active(&state, &user, false, Actor::Cli).await?;
            println!("{} is disabled", user.username);
        }
        UserCommand::Unlock { username } => {
            let user = accounts::require_user(&state, &username).await?;
            accounts::unlock(&state, &user, Actor::Cli).await?;
            println!("{} is unlocked", user.username);
        }
        UserCommand::Enable { username } => {
            let user = accounts::require_user(&state, &username).await?;
            accounts::set_active(&state, &user, true, Actor::Cli).await?;
            println!("{} is enabled", user.username);
        }
    }
    Ok(())
}

async fn apikey_command(state: &AppState, cmd: ApiKeyCommand) -> Result<(), Failure> {
    use kyros::audit::Actor;
    use kyros::auth::api_keys::{self, ApiKey, NewApiKey, Scopes};
    use kyros::store::api_keys as store;

    let failed = |e: &dyn std::fmt::Display| Failure::Other(e.to_string());
    let owner_named = |name: String| async move {
        kyros::auth::accounts::find_user(&state.db, &name)
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| Failure::Other(format!("user {name} does not exist")))
    };
    match cmd {
        ApiKeyCommand::Create {
            owner,
            name,
            scopes,
            expires_in_days,
        } => {
            let scopes = Scopes::parse_csv(&scopes)
                .map_err(|problem| Failure::Other(format!("--scopes: {problem}")))?;
            let owner = owner_named(owner).await?;
            let created = api_keys::create(
                state,
                &owner,
                NewApiKey {
                    name,
                    scopes,
                    expires_in_days,
                },
                Actor::Cli,
            )
            .await
            .map_err(|e| failed(&e))?;
            println!("{}", created.secret.key);
            eprintln!(
                "kyros: created API key {} ({}) for {}; it is not shown again",
                created.key.id, created.key.lookup_id, owner.username
            );
        }
        ApiKeyCommand::List { owner } => {
            let owner_id = match owner {
                Some(name) => Some(owner_named(name).await?.id),
                None => None,
            };
            let names: std::collections::HashMap<_, _> = users::list(&state.db)
                .await
                .map_err(|e| failed(&e))?
                .into_iter()
                .map(|u| (u.id, u.username))
                .collect();
            let rows = store::list(&state.db, owner_id)
                .await
                .map_err(|e| failed(&e))?;
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
            };
            println!(
                "id\tlookup_id\tname\towner\tscopes\tcreated_at\texpires_at\tlast_used_at\trevoked"
            );
            for key in rows.iter().map(ApiKey::from) {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.lookup_id,
                    key.name,
                    names.get(&key.owner_id).map_or("-", String::as_str),
                    key.scopes,
                    key.created_at.to_rfc3339(),
                    time(key.expires_at),
                    time(key.last_used_at),
                    key.revoked_at.is_some(),
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let id = uuid::Uuid::parse_str(id.trim())
                .map_err(|_| Failure::Other("--id must be a UUID".into()))?;
            let row = store::find_by_id(&state.db, id)
                .await
                .map_err(|e| failed(&e))?
                .ok_or_else(|| Failure::Other(format!("API key {id} does not exist")))?;
            if row.revoked_at.is_some() {
                println!("API key {id} was already revoked");
                return Ok(());
            }
            api_keys::revoke(state, &ApiKey::from(&row), Actor::Cli)
                .await
                .map_err(|e| failed(&e))?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}

/// A password from stdin (one line) or from a terminal prompt; never from the command line.
fn read_password(from_stdin: bool) -> Result<SecretString, Failure> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::Other(format!("cannot read the password from stdin: {e}")))?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        return Ok(SecretString::from(password.to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Other(
            "no terminal to prompt for the password; pass --password-stdin and pipe it in".into(),
        ));
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| Failure::Other(format!("cannot read the password: {e}")))?;
    let second = rpassword::prompt_password("Repeat password: ")
        .map_err(|e| Failure::Other(format!("cannot read the password: {e}")))?;
    if first != second {
        return Err(Failure::Other("the passwords do not match".into()));
    }
    Ok(SecretString::from(first))
}

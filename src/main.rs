//! `k8s`: a lightweight Kubernetes distribution in one binary.

mod agent;
mod cli;
mod components;
mod datastore;
mod etcd;
mod fsutil;
mod inventory;
mod https;
mod kubeapi;
mod join;
mod kubectl;
mod node;
mod payload;
mod pki;
mod reset;
mod server;
mod signals;
mod ssh;
mod status;
mod systemd;
mod templates;
mod up;
mod version;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // glibc gives every thread that allocates its own arena; the read pool's
    // threads then hold on to memory they used once. Two arenas keep the
    // resident size near what is in use (measured: peak RSS 207 → ~100 MiB
    // under the datastore benchmark's range workload).
    // SAFETY: called before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("K8S_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: cli::Command) -> anyhow::Result<()> {
    match command {
        cli::Command::Version => Ok(version::print()?),
        cli::Command::Kubectl { args } => kubectl::exec(args),
        cli::Command::Server(args) => {
            let file = config_file(args.config)?;
            let config = args.options.over(file).resolve()?;
            runtime()?.block_on(server::run(config))
        }
        cli::Command::Agent(args) => {
            let file = config_file(args.config)?;
            runtime()?.block_on(agent::run(args.options.over(file)))
        }
        cli::Command::Token(cmd) => runtime()?.block_on(join::cli::run(cmd)),
        cli::Command::Etcd(cmd) => runtime()?.block_on(cmd.run()),
        cli::Command::Status(a) => runtime()?.block_on(status::print(&a.data_dir)),
        cli::Command::Kubeconfig => status::print_kubeconfig(),
        cli::Command::Up(args) => runtime()?.block_on(up::run(args)),
        cli::Command::Reset(a) => match a.inventory {
            Some(file) => runtime()?.block_on(up::reset::run(&file, a.yes)),
            None => reset::run(&a.data_dir.data_dir, a.yes),
        },
        cli::Command::AttachPayload { exe, payload, out } => payload::attach(&exe, &payload, &out),
        cli::Command::Datastore(args) => runtime()?.block_on(datastore::serve(args.into_config())),
    }
}

/// The config file named with --config, else the default one if present.
fn config_file<T: serde::de::DeserializeOwned + Default>(named: Option<std::path::PathBuf>) -> anyhow::Result<T> {
    let explicit = named.is_some();
    let path = named.unwrap_or_else(|| server::config::DEFAULT_CONFIG.into());
    server::config::load_file(&path, explicit)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

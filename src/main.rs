//! `k8s`: the command line over the library (`lib.rs`).

use clap::Parser;
use k8s::{agent, backup, certs, check_config, cli, datastore, host, join, payload, reset, secrets_encrypt, server, status, tools, up, upgrade, version};

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
            // kube-client logs every failed connection as an error; our own
            // code says what a failed call means.
            tracing_subscriber::EnvFilter::try_from_env("K8S_LOG").unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
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
        cli::Command::Version => {
            // `k8s version | head -1` ends quietly, as other tools do (Rust
            // ignores SIGPIPE, and println! would panic on the closed pipe).
            // SAFETY: setting a signal disposition before any thread starts.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            Ok(version::print()?)
        }
        cli::Command::Kubectl { args } => tools::kubectl(args),
        cli::Command::Ctr { args } => tools::ctr(args),
        cli::Command::Crictl { args } => tools::crictl(args),
        cli::Command::Server(args) => {
            let file = host::config::load(args.config.as_deref())?;
            let config = server::Config::resolve(host::config::over(args.options, file))?;
            runtime()?.block_on(server::run(config))
        }
        cli::Command::Agent(args) => {
            let file = host::config::load(args.config.as_deref())?;
            runtime()?.block_on(agent::run(host::config::over(args.options, file)))
        }
        cli::Command::Token(cmd) => runtime()?.block_on(join::cli::run(cmd)),
        cli::Command::Etcd(cmd) => runtime()?.block_on(cmd.run()),
        cli::Command::Upgrade(cmd) => match cmd {
            cli::UpgradeCommand::Apply { binary, dry_run, ready_timeout, soak, drain, output, data_dir } => {
                let opts = upgrade::cli::ApplyOptions {
                    dry_run,
                    health_gates: upgrade::crd::HealthGates { node_ready_timeout_seconds: ready_timeout, soak_seconds: soak },
                    drain: serde_yaml::from_str(&drain)?,
                    output: match output {
                        cli::OutputFormat::Text => upgrade::cli::Output::Text,
                        cli::OutputFormat::Json => upgrade::cli::Output::Json,
                    },
                };
                runtime()?.block_on(upgrade::cli::apply(&binary, opts, &local(data_dir)?))
            }
            cli::UpgradeCommand::Status { output } => {
                runtime()?.block_on(upgrade::cli::status(output == cli::OutputFormat::Json, &admin_kubeconfig()?))
            }
            cli::UpgradeCommand::Pause { plan } => runtime()?.block_on(upgrade::cli::set_paused(plan, true, &admin_kubeconfig()?)),
            cli::UpgradeCommand::Resume { plan } => runtime()?.block_on(upgrade::cli::set_paused(plan, false, &admin_kubeconfig()?)),
            cli::UpgradeCommand::Guard { data_dir, binary } => upgrade::guard::run(&local(data_dir)?.data_dir, &binary),
        },
        cli::Command::SecretsEncrypt(cli::SecretsEncryptCommand::Status(a)) => runtime()?.block_on(secrets_encrypt::status(&local(a)?)),
        cli::Command::SecretsEncrypt(cli::SecretsEncryptCommand::RotateKeys(a)) => {
            runtime()?.block_on(secrets_encrypt::rotate_keys(&local(a)?))
        }
        cli::Command::Certs(cmd) => certs::run(cmd),
        cli::Command::Backup(a) => runtime()?.block_on(backup::cli::run(a)),
        cli::Command::Restore(a) => backup::cli::restore(&a.file, &local(a.data_dir)?.data_dir),
        cli::Command::CheckConfig(a) => check_config::run(&a),
        cli::Command::Status(a) => runtime()?.block_on(status::print(&local(a)?)),
        cli::Command::Kubeconfig => status::print_kubeconfig(&admin_kubeconfig()?),
        cli::Command::Up(args) => runtime()?.block_on(up::run(args)),
        cli::Command::Reset(a) => match a.inventory {
            Some(file) => runtime()?.block_on(up::reset::run(&file, a.yes)),
            None => reset::run(&local(a.data_dir)?.data_dir, a.yes),
        },
        cli::Command::AttachPayload { exe, payload, out } => payload::attach(&exe, &payload, &out),
        cli::Command::ExtractPayload { exe, data_dir } => {
            let payload = payload::Payload::of(&exe)?.ok_or(payload::PayloadError::Missing)?;
            println!("{}", payload.extract(&data_dir)?.dir.display());
            Ok(())
        }
        cli::Command::Datastore(args) => runtime()?.block_on(datastore::serve(args.into_config())),
    }
}

/// Where this host's server or agent keeps its data and admin kubeconfig:
/// `--data-dir`, else /etc/k8s/config.yaml, else the defaults.
fn local(d: cli::DataDirArg) -> anyhow::Result<host::config::Local> {
    host::config::Local::resolve(d.data_dir)
}

fn admin_kubeconfig() -> anyhow::Result<std::path::PathBuf> {
    Ok(host::config::Local::resolve(None)?.admin_kubeconfig)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

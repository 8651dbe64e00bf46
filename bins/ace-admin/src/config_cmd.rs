//! `ace-admin config` and `ace-admin cluster`: write starter files, check
//! the configuration, and show resolved clusters.
//!
//! All the work is in `ace-config`; this module parses flags and prints.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ace_config::{
    ACE_YAML_TEMPLATE, CheckOptions, ConfigSource, Level, NodeSelection, SERVICE_FILE_TEMPLATE,
    ServiceFile, check, resolve_cluster, write_new_file,
};
use anyhow::Context as _;
use clap::{Args, Subcommand};

/// Where `ace.yaml` comes from and what overrides it.
///
/// Precedence, lowest first: built-in defaults, the file, `ACE_*`
/// environment variables (`ACE_SERVER__LISTEN_PORT=6000`), `--set` flags.
#[derive(Debug, Args)]
pub struct ConfigSourceArgs {
    /// The ace.yaml to read [default: $ACE_CONFIG, else ./ace.yaml, else
    /// built-in defaults].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Override one key, e.g. --set server.listen_port=6000 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigSourceArgs {
    /// The layered source these flags describe.
    fn source(&self) -> anyhow::Result<ConfigSource> {
        let mut source = ConfigSource::new();
        if let Some(path) = &self.config {
            source = source.with_path(path);
        }
        for assignment in &self.set {
            source = source.with_assignment(assignment)?;
        }
        Ok(source)
    }
}

/// Write, check and inspect ace.yaml.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Write a commented ace.yaml holding every key at its default.
    Init(InitArgs),
    /// Load ace.yaml and pg_service.conf, resolve the cluster, check every
    /// file they name, and print a summary with secrets masked.
    ///
    /// Exit status: 0 when all is well, 1 when something is broken, 2 when
    /// there are only warnings (such as a private key readable by others).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// File to write.
    #[arg(long, value_name = "PATH")]
    path: Option<PathBuf>,

    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,

    /// Print to standard output instead of writing a file.
    #[arg(long, conflicts_with_all = ["path", "force"])]
    stdout: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    source: ConfigSourceArgs,

    /// Cluster to resolve [default: default_cluster; when that is empty,
    /// every cluster in the service file].
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,

    /// The pg_service.conf to read [default: $ACE_PGSERVICEFILE,
    /// $PGSERVICEFILE, ./pg_service.conf, ~/.pg_service.conf,
    /// /etc/pg_service.conf].
    #[arg(long, value_name = "PATH")]
    service_file: Option<PathBuf>,

    /// Print only warnings and errors, and no summary.
    #[arg(long, short)]
    quiet: bool,
}

/// Write and inspect pg_service.conf clusters.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Write a sample pg_service.conf with one three-node cluster.
    Init(InitArgs),
    /// List the clusters of the service file.
    List(ServiceFileArgs),
    /// Show a cluster's nodes with their resolved settings (passwords
    /// masked), after ace.yaml's cert_auth defaults are applied.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ServiceFileArgs {
    /// The pg_service.conf to read [default: discovered as for `config
    /// check`].
    #[arg(long, value_name = "PATH")]
    service_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The cluster [default: default_cluster from ace.yaml].
    cluster: Option<String>,

    /// Nodes to show: `all` or names separated by commas (exact match).
    #[arg(long, default_value = "all", value_name = "n1,n3|all")]
    nodes: String,

    #[command(flatten)]
    service: ServiceFileArgs,

    #[command(flatten)]
    source: ConfigSourceArgs,
}

/// Runs `ace-admin config ...`.
pub fn run_config(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Init(init) => write_template(init, "ace.yaml", ACE_YAML_TEMPLATE),
        ConfigCommand::Check(args) => run_check(args),
    }
}

/// Runs `ace-admin cluster ...`.
pub fn run_cluster(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Init(init) => {
            write_template(init, "pg_service.conf", SERVICE_FILE_TEMPLATE)
        }
        ClusterCommand::List(args) => {
            let service = load_service(&args)?;
            let mut out = std::io::stdout().lock();
            for name in service.cluster_names() {
                writeln!(out, "{name}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Show(args) => {
            let config = args.source.source()?.load()?.config;
            let service = load_service(&args.service)?;
            let cluster = resolve_cluster(&config, &service, args.cluster.as_deref())?;
            let selection: NodeSelection = args.nodes.parse()?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "cluster {} ({})",
                cluster.name,
                cluster.service_file.display()
            )?;
            for node in cluster.select(&selection)? {
                // NodeSettings' Display masks password and sslpassword.
                writeln!(out, "  {}: {}", node.name, node.settings)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_service(args: &ServiceFileArgs) -> anyhow::Result<ServiceFile> {
    Ok(match &args.service_file {
        Some(path) => ServiceFile::load(path)?,
        None => ServiceFile::discover()?,
    })
}

fn write_template(args: InitArgs, default_name: &str, contents: &str) -> anyhow::Result<ExitCode> {
    if args.stdout {
        std::io::stdout().lock().write_all(contents.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.path.unwrap_or_else(|| PathBuf::from(default_name));
    write_new_file(&path, contents, args.force)
        .with_context(|| format!("{default_name} not written"))?;
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source = args.source.source()?;
    let options = CheckOptions {
        cluster: args.cluster,
        service_file: args.service_file,
    };
    let report = check(&source, &options);
    let mut out = std::io::stdout().lock();
    for finding in &report.findings {
        if !args.quiet || finding.level != Level::Ok {
            writeln!(out, "{finding}")?;
        }
    }
    if !args.quiet && report.config.is_some() {
        writeln!(out)?;
        write!(out, "{}", report.summary())?;
    }
    Ok(match report.worst() {
        Level::Ok => ExitCode::SUCCESS,
        Level::Error => ExitCode::from(1),
        Level::Warn => ExitCode::from(2),
    })
}

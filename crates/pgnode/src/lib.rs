//! Local PostgreSQL server programs: where they are and whom they run as.
//!
//! `ace-admin demo` and the test kit both start throw-away PostgreSQL nodes
//! on this machine. Before either can run `initdb`, they need two answers,
//! which this crate gives:
//!
//! - [`PgBinaries::find`]: the folder holding `initdb`, `postgres` and
//!   `pg_ctl`, searched on `PATH`, then through `pg_config --bindir`, then in
//!   the newest `/usr/lib/postgresql/<major>/bin` (Debian's layout).
//! - [`RunAs::detect`]: the OS user the servers run as. That is whoever we
//!   are, except root: `initdb` and the server refuse root, so as root every
//!   server program runs as the `postgres` OS user, and the files it needs
//!   are handed to that user with [`RunAs::hand_over`].
//!
//! What the callers do with the programs (their configuration, watchdogs and
//! clean-up) stays with them.
//!
//! # Example
//!
//! ```no_run
//! use ace_pgnode::{PgBinaries, RunAs};
//!
//! let binaries = PgBinaries::find()?;
//! let run_as = RunAs::detect()?;
//! let folder = std::path::Path::new("/tmp/node");
//! std::fs::create_dir_all(folder)?;
//! run_as.check_reaches(folder)?;
//! run_as.hand_over(folder)?;
//! let status = run_as
//!     .command(binaries.program("initdb"))
//!     .arg("-D")
//!     .arg(folder.join("data"))
//!     .status()?;
//! assert!(status.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The programs a bin folder must hold to be chosen. They ship together in
/// every PostgreSQL server package.
const PROGRAMS: [&str; 3] = ["initdb", "postgres", "pg_ctl"];

/// The OS user that runs the servers when we are root.
const SERVER_USER: &str = "postgres";

/// What can go wrong while finding the server programs or preparing to run
/// them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No folder searched holds `initdb`, `postgres` and `pg_ctl`.
    #[error(
        "the PostgreSQL server binaries (initdb, postgres, pg_ctl) were not found \
         on PATH, through `pg_config --bindir`, or in /usr/lib/postgresql/*/bin.\n\
         Install them and retry:\n  \
         Debian/Ubuntu: sudo apt-get install postgresql   (or run scripts/setup.sh)\n  \
         Fedora/RHEL:   sudo dnf install postgresql-server\n  \
         macOS:         brew install postgresql\n\
         or put the folder that holds initdb on PATH."
    )]
    NoServerBinaries,
    /// `initdb` was found but its symlinks could not be resolved.
    #[error("resolving {path}: {source}")]
    Resolve {
        /// The `initdb` found.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// We are root, and there is no `postgres` OS user to run the servers as.
    #[error(
        "running as root, PostgreSQL has to run as the OS user `postgres` (initdb \
         refuses root), and there is none; install the `postgresql` package, which \
         creates it, or run as an ordinary user"
    )]
    NoPostgresUser,
    /// A path could not be given to the `postgres` OS user.
    #[error("handing {path} to the postgres OS user: {source}")]
    HandOver {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A program could not be started as the `postgres` OS user.
    #[error("running {program} as the postgres OS user: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `postgres` OS user cannot enter a directory, so a server could
    /// not use it.
    #[error(
        "the postgres OS user cannot enter {path} (a parent directory is closed to \
         it); choose a directory whose parents it can enter, or open them with \
         `chmod o+x`"
    )]
    Unreachable {
        /// The directory.
        path: PathBuf,
    },
}

/// The folder of the PostgreSQL server programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// The folder holding `initdb`, `postgres` and `pg_ctl`, symlinks
    /// resolved.
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// Finds the server programs: the first folder on `PATH` holding
    /// `initdb`, `postgres` and `pg_ctl`, else `pg_config --bindir`, else the
    /// newest `/usr/lib/postgresql/<major>/bin`.
    ///
    /// `initdb` is followed through symlinks (`/usr/local/bin/initdb ->
    /// /usr/lib/postgresql/..`), so it finds its sibling programs and share
    /// files.
    ///
    /// # Errors
    ///
    /// [`Error::NoServerBinaries`] when no such folder exists, and
    /// [`Error::Resolve`] when `initdb` cannot be followed.
    pub fn find() -> Result<Self, Error> {
        let from_pg_config = || {
            let out = Command::new("pg_config").arg("--bindir").output().ok()?;
            let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
            complete(&dir).then_some(dir)
        };
        let newest_debian = || {
            let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = entry.path().join("bin");
                    complete(&bin).then_some((version, bin))
                })
                .collect();
            dirs.sort();
            dirs.pop().map(|(_, dir)| dir)
        };
        let bindir = std::env::var_os("PATH")
            .and_then(|path| first_complete(&path))
            .or_else(from_pg_config)
            .or_else(newest_debian)
            .ok_or(Error::NoServerBinaries)?;
        Self::resolve(bindir)
    }

    /// The folder `initdb` really lives in.
    fn resolve(bindir: PathBuf) -> Result<Self, Error> {
        let path = bindir.join("initdb");
        let initdb = std::fs::canonicalize(&path).map_err(|source| Error::Resolve {
            path: path.clone(),
            source,
        })?;
        let bindir = initdb.parent().map(Path::to_path_buf).unwrap_or(bindir);
        Ok(PgBinaries { bindir })
    }

    /// `bindir/<program>`, such as `initdb`, `postgres` or `pg_ctl`.
    pub fn program(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }

    /// `psql`, beside the server programs or else on `PATH`, when installed.
    pub fn psql(&self) -> Option<PathBuf> {
        let beside = self.program("psql");
        if beside.is_file() {
            return Some(beside);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("psql"))
            .find(|path| path.is_file())
    }
}

/// Whether `dir` holds every program of [`PROGRAMS`].
fn complete(dir: &Path) -> bool {
    PROGRAMS.iter().all(|program| dir.join(program).is_file())
}

/// The first folder of a `PATH`-style list that is [`complete`].
fn first_complete(path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path).find(|dir| complete(dir))
}

/// The OS user the server programs run as: ourselves, or `postgres` when we
/// are root.
///
/// Decided once by [`RunAs::detect`]; every command made by
/// [`RunAs::command`] then switches to that user, and nothing else changes.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    /// The `postgres` user's ids when we are root; `None` otherwise.
    ids: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
}

impl RunAs {
    /// Ourselves, unless the effective user is root; then the `postgres` OS
    /// user.
    ///
    /// # Errors
    ///
    /// [`Error::NoPostgresUser`] when we are root and there is no such user.
    pub fn detect() -> Result<Self, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs { ids: None });
        }
        let user = nix::unistd::User::from_name(SERVER_USER)
            .ok()
            .flatten()
            .ok_or(Error::NoPostgresUser)?;
        Ok(RunAs {
            ids: Some((user.uid, user.gid)),
        })
    }

    /// Whether the servers run as another user (we are root).
    pub fn is_other_user(&self) -> bool {
        self.ids.is_some()
    }

    /// A command that runs `program` as the servers' user.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    /// Gives `path` (not its contents) to the servers' user; nothing unless
    /// we are root.
    ///
    /// # Errors
    ///
    /// [`Error::HandOver`] when `chown` fails.
    pub fn hand_over(&self, path: &Path) -> Result<(), Error> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(
                |source| Error::HandOver {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// Checks that the servers' user can enter `dir`. As root, a parent such
    /// as `/root` may be closed to `postgres`, and the servers would fail
    /// later with a less helpful message. Always passes when we are not root.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] when the user cannot enter `dir`, and
    /// [`Error::Spawn`] when `/bin/sh` cannot be run to find out.
    pub fn check_reaches(&self, dir: &Path) -> Result<(), Error> {
        if self.ids.is_none() {
            return Ok(());
        }
        let shell = Path::new("/bin/sh");
        let status = self
            .command(shell)
            .args(["-c", "cd \"$1\"", "ace-pgnode-check"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .status()
            .map_err(|source| Error::Spawn {
                program: shell.to_path_buf(),
                source,
            })?;
        if !status.success() {
            return Err(Error::Unreachable {
                path: dir.to_path_buf(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// A folder holding empty files named after `programs`.
    fn fake_bindir(programs: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for program in programs {
            let path = dir.path().join(program);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    #[test]
    fn path_search_skips_a_folder_without_pg_ctl() {
        let partial = fake_bindir(&["initdb", "postgres"]);
        let full = fake_bindir(&PROGRAMS);
        let path = std::env::join_paths([partial.path(), full.path()]).unwrap();
        assert_eq!(first_complete(&path).as_deref(), Some(full.path()));
        assert_eq!(first_complete(&OsString::from(partial.path())), None);
    }

    #[test]
    fn initdb_is_followed_to_the_real_folder() {
        let real = fake_bindir(&PROGRAMS);
        let links = tempfile::tempdir().unwrap();
        for program in PROGRAMS {
            std::os::unix::fs::symlink(real.path().join(program), links.path().join(program))
                .unwrap();
        }
        let found = first_complete(&OsString::from(links.path())).unwrap();
        assert_eq!(found, links.path());
        let binaries = PgBinaries::resolve(found).unwrap();
        let real = std::fs::canonicalize(real.path()).unwrap();
        assert_eq!(binaries.bindir, real);
        assert_eq!(binaries.program("pg_ctl"), real.join("pg_ctl"));
    }

    #[test]
    fn psql_beside_the_server_programs_wins() {
        let dir = fake_bindir(&["initdb", "postgres", "pg_ctl", "psql"]);
        let binaries = PgBinaries::resolve(dir.path().to_path_buf()).unwrap();
        assert_eq!(binaries.psql(), Some(binaries.program("psql")));
    }

    #[test]
    fn a_missing_initdb_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = PgBinaries::resolve(dir.path().to_path_buf()).unwrap_err();
        assert!(matches!(&error, Error::Resolve { path, .. } if path.ends_with("initdb")));
        assert!(error.to_string().contains("initdb"), "{error}");
    }

    /// Whichever user this runs as: root switches to `postgres` (or says it
    /// cannot), anyone else stays themselves, and commands really run as the
    /// user chosen.
    #[test]
    fn commands_run_as_the_detected_user() {
        let postgres = nix::unistd::User::from_name(SERVER_USER).ok().flatten();
        let euid = nix::unistd::geteuid();
        let expected = match (euid.is_root(), &postgres) {
            (false, _) => euid,
            (true, Some(user)) => user.uid,
            (true, None) => {
                assert!(matches!(RunAs::detect(), Err(Error::NoPostgresUser)));
                return;
            }
        };
        let run_as = RunAs::detect().unwrap();
        assert_eq!(run_as.is_other_user(), euid.is_root());
        let out = run_as
            .command("id")
            .arg("-u")
            .current_dir("/")
            .output()
            .unwrap();
        assert!(out.status.success());
        let uid = String::from_utf8(out.stdout).unwrap();
        assert_eq!(uid.trim(), expected.to_string());
    }

    #[test]
    fn hand_over_gives_the_path_to_the_servers_user() {
        let Ok(run_as) = RunAs::detect() else {
            return; // root without a postgres user: covered above
        };
        let dir = tempfile::tempdir().unwrap();
        let before = std::fs::metadata(dir.path()).unwrap().uid();
        run_as.hand_over(dir.path()).unwrap();
        let after = std::fs::metadata(dir.path()).unwrap().uid();
        match run_as.ids {
            Some((uid, _)) => assert_eq!(after, uid.as_raw()),
            None => assert_eq!(after, before),
        }
    }

    #[test]
    fn check_reaches_refuses_a_closed_parent_for_another_user() {
        let Ok(run_as) = RunAs::detect() else {
            return;
        };
        let closed = tempfile::tempdir().unwrap();
        std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let inner = closed.path().join("nodes");
        std::fs::create_dir(&inner).unwrap();
        let result = run_as.check_reaches(&inner);
        if run_as.is_other_user() {
            assert!(matches!(result, Err(Error::Unreachable { ref path }) if path == &inner));
            run_as.check_reaches(Path::new("/tmp")).unwrap();
        } else {
            result.unwrap();
        }
    }
}

//! The database engines Berth runs, one place per engine: the image contract
//! (environment, data directory, port), the readiness probe, the dump and restore
//! argument vectors, the restore drill's check and the connection string. Pure
//! functions over validated values, so every argument vector is unit-tested here,
//! including those of engines (MySQL, MongoDB) no test machine can run.
//!
//! Secrets stay off command lines (which `docker inspect` and `ps` show): they
//! travel in the exec's environment (`PGPASSWORD`, `MYSQL_PWD`, `REDISCLI_AUTH`,
//! mongosh's `process.env`), or in files Berth writes into the container with
//! mode 0600 when it creates it (Redis's `requirepass`, the MongoDB tools'
//! `--config`).

use crate::config::DbImages;
use crate::names::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEngine {
    Postgres,
    Mysql,
    Mariadb,
    Mongo,
    Redis,
}

/// An argument vector and the environment it runs with, inside the container.
pub use crate::docker::Exec;
/// A file written into a container when it is created.
pub use crate::docker::FileSpec;

fn exec(argv: &[&str], env: Vec<String>) -> Exec {
    Exec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        env,
    }
}

/// How a dump goes back into a running database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestorePlan {
    /// Stream the dump into this program's standard input.
    Stdin(Exec),
    /// Redis: write the RDB file beside the data, then swap it in while the server
    /// is stopped (Redis only reads its RDB file at start).
    RedisRdb,
}

/// Where the Redis restore writes the incoming RDB file before the swap.
pub const REDIS_INCOMING: &str = "/data/berth-restore.rdb";
pub const REDIS_RDB: &str = "/data/dump.rdb";
/// Redis's configuration, on the volume: the password is here rather than on
/// the command line.
pub const REDIS_CONF: &str = "/data/berth-redis.conf";
/// Redis 7's multi-part append-only file lives in this directory (a manifest, a
/// base file and incremental files); with AOF on, Redis loads only this at start.
pub const REDIS_AOF_DIR: &str = "/data/appendonlydir";
/// Where a restore stages the AOF directory it swaps in.
pub const REDIS_AOF_INCOMING: &str = "/data/berth-restore.aof";
/// The staged directory's base file (an RDB file is a valid AOF base in Redis 7)
/// and its manifest, named as Redis names them for `appendfilename appendonly.aof`.
pub const REDIS_AOF_BASE: &str = "appendonly.aof.1.base.rdb";
pub const REDIS_AOF_MANIFEST: &str = "appendonly.aof.manifest";
/// The MongoDB tools' `--config` file (YAML with the password), written when the
/// container is created, readable by root only (execs run as root).
pub const MONGO_TOOLS_CONF: &str = "/etc/berth-mongo-tools.yaml";
/// The container user of the official images that run as a fixed uid (Redis).
const IMAGE_UID: u64 = 999;

/// The validated identity of one service, as the functions below need it.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    /// MySQL's and MariaDB's root password (Berth's tools run as root), apart
    /// from the app user's; the same as `password` for the other engines and
    /// for services made before they had one.
    pub root_password: &'a str,
    /// Redis: persist with an append-only file as well as RDB snapshots.
    pub redis_aof: bool,
}

/// Row counts per table (or key counts per database) that a drill reports.
pub type Counts = Vec<(String, u64)>;

/// Exact row counts of every user table, from one constant SQL text: each table
/// is counted with `count(*)` through `query_to_xml`, so no dynamic SQL is built
/// outside the server.
const PG_COUNT_SQL: &str = "SELECT table_schema || '.' || table_name, \
(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text \
FROM information_schema.tables \
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') \
ORDER BY 1";

/// MySQL's and MariaDB's drill counts (see [`DbEngine::drill_check`]), by
/// table name: one database is dumped, and restored under another name in a
/// drill, so the schema would only say "drill".
const MYSQL_COUNT_SQL: &str = "SET SESSION group_concat_max_len = 1048576; \
SELECT COALESCE(GROUP_CONCAT(CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', \
REPLACE(table_schema, '`', '``'), '`.`', REPLACE(table_name, '`', '``'), '`') ORDER BY table_name SEPARATOR ' UNION ALL '), \
'SELECT NULL, NULL FROM DUAL WHERE FALSE') INTO @berth_counts \
FROM information_schema.tables WHERE table_schema = '{database}' AND table_type = 'BASE TABLE'; \
PREPARE berth_counts FROM @berth_counts; EXECUTE berth_counts; DEALLOCATE PREPARE berth_counts";

impl DbEngine {
    pub const FIELD: &'static str = "engine";
    pub const ALL: [DbEngine; 5] = [
        DbEngine::Postgres,
        DbEngine::Mysql,
        DbEngine::Mariadb,
        DbEngine::Mongo,
        DbEngine::Redis,
    ];

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == raw.trim())
            .ok_or_else(|| ValidationError::new(Self::FIELD, "must be one of postgres, mysql, mariadb, mongo, redis"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Postgres => "postgres",
            DbEngine::Mysql => "mysql",
            DbEngine::Mariadb => "mariadb",
            DbEngine::Mongo => "mongo",
            DbEngine::Redis => "redis",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DbEngine::Postgres => "PostgreSQL",
            DbEngine::Mysql => "MySQL",
            DbEngine::Mariadb => "MariaDB",
            DbEngine::Mongo => "MongoDB",
            DbEngine::Redis => "Redis",
        }
    }

    pub fn default_image(self, images: &DbImages) -> &str {
        match self {
            DbEngine::Postgres => &images.postgres,
            DbEngine::Mysql => &images.mysql,
            DbEngine::Mariadb => &images.mariadb,
            DbEngine::Mongo => &images.mongo,
            DbEngine::Redis => &images.redis,
        }
    }

    pub fn port(self) -> u16 {
        match self {
            DbEngine::Postgres => 5432,
            DbEngine::Mysql | DbEngine::Mariadb => 3306,
            DbEngine::Mongo => 27017,
            DbEngine::Redis => 6379,
        }
    }

    /// The data directory the named volume is mounted on.
    pub fn data_dir(self) -> &'static str {
        match self {
            DbEngine::Postgres => "/var/lib/postgresql/data",
            DbEngine::Mysql | DbEngine::Mariadb => "/var/lib/mysql",
            DbEngine::Mongo => "/data/db",
            DbEngine::Redis => "/data",
        }
    }

    /// Whether the engine has a database name and a user to create.
    pub fn has_database(self) -> bool {
        self != DbEngine::Redis
    }

    pub fn default_database(self) -> &'static str {
        match self {
            DbEngine::Redis => "",
            _ => "app",
        }
    }

    pub fn default_user(self) -> &'static str {
        match self {
            DbEngine::Redis => "default",
            DbEngine::Mongo => "root",
            _ => "app",
        }
    }

    /// The object name's extension: the dump format, gzip-compressed by Berth.
    pub fn dump_extension(self) -> &'static str {
        match self {
            DbEngine::Postgres => "pgdump.gz",
            DbEngine::Mysql | DbEngine::Mariadb => "sql.gz",
            DbEngine::Mongo => "archive.gz",
            DbEngine::Redis => "rdb.gz",
        }
    }

    /// The container's environment, in each official image's contract.
    pub fn container_env(self, id: &Identity) -> Vec<String> {
        let (db, user, pw) = (id.database, id.user, id.password);
        match self {
            DbEngine::Postgres => vec![
                format!("POSTGRES_USER={user}"),
                format!("POSTGRES_PASSWORD={pw}"),
                format!("POSTGRES_DB={db}"),
                "PGDATA=/var/lib/postgresql/data".into(),
            ],
            DbEngine::Mysql => vec![
                format!("MYSQL_ROOT_PASSWORD={}", id.root_password),
                format!("MYSQL_DATABASE={db}"),
                format!("MYSQL_USER={user}"),
                format!("MYSQL_PASSWORD={pw}"),
            ],
            DbEngine::Mariadb => vec![
                format!("MARIADB_ROOT_PASSWORD={}", id.root_password),
                format!("MARIADB_DATABASE={db}"),
                format!("MARIADB_USER={user}"),
                format!("MARIADB_PASSWORD={pw}"),
            ],
            DbEngine::Mongo => vec![
                format!("MONGO_INITDB_ROOT_USERNAME={user}"),
                format!("MONGO_INITDB_ROOT_PASSWORD={pw}"),
                format!("MONGO_INITDB_DATABASE={db}"),
            ],
            DbEngine::Redis => Vec::new(),
        }
    }

    /// The command, where the image's default one needs arguments: Redis reads
    /// its configuration file (the official image has no environment variable
    /// for the password, and a `--requirepass` argument shows in `docker inspect`).
    pub fn command(self, _id: &Identity) -> Option<Vec<String>> {
        match self {
            DbEngine::Redis => Some(vec!["redis-server".into(), REDIS_CONF.into()]),
            _ => None,
        }
    }

    /// Files written into the container when it is created, before it starts.
    pub fn container_files(self, id: &Identity) -> Vec<FileSpec> {
        match self {
            DbEngine::Redis => vec![FileSpec {
                path: REDIS_CONF.into(),
                contents: redis_conf(id).into_bytes(),
                mode: 0o600,
                uid: IMAGE_UID,
                gid: IMAGE_UID,
            }],
            DbEngine::Mongo => vec![FileSpec {
                path: MONGO_TOOLS_CONF.into(),
                // A YAML scalar in single quotes: the generated password is
                // alphanumeric, and a quote would be doubled.
                contents: format!("password: '{}'\n", id.password.replace('\'', "''")).into_bytes(),
                mode: 0o600,
                uid: 0,
                gid: 0,
            }],
            _ => Vec::new(),
        }
    }

    fn client_env(self, id: &Identity) -> Vec<String> {
        match self {
            DbEngine::Postgres => vec![format!("PGPASSWORD={}", id.password)],
            DbEngine::Mysql | DbEngine::Mariadb => vec![format!("MYSQL_PWD={}", id.root_password)],
            DbEngine::Redis => vec![format!("REDISCLI_AUTH={}", id.password)],
            // Read by the drill's mongosh script (`process.env`).
            DbEngine::Mongo => vec![format!("BERTH_MONGO_PASSWORD={}", id.password)],
        }
    }

    /// MariaDB 11's images name their clients `mariadb-*` (the MySQL names are gone).
    fn mysql_program(self, mysql: &'static str, mariadb: &'static str) -> &'static str {
        if self == DbEngine::Mariadb {
            mariadb
        } else {
            mysql
        }
    }

    /// MongoDB's tools: the user on the command line, the password from the
    /// `--config` file written into the container ([`MONGO_TOOLS_CONF`]).
    fn mongo_auth<'a>(id: &'a Identity) -> [&'a str; 6] {
        [
            "--username",
            id.user,
            "--authenticationDatabase",
            "admin",
            "--config",
            MONGO_TOOLS_CONF,
        ]
    }

    /// Exits 0 when the server accepts connections.
    pub fn readiness(self, id: &Identity) -> Exec {
        let env = self.client_env(id);
        match self {
            DbEngine::Postgres => exec(
                &["pg_isready", "-h", "127.0.0.1", "-U", id.user, "-d", id.database],
                env,
            ),
            DbEngine::Mysql | DbEngine::Mariadb => exec(
                &[
                    self.mysql_program("mysqladmin", "mariadb-admin"),
                    "ping",
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                    "--silent",
                ],
                env,
            ),
            // `ping` needs no authentication, so no credentials at all.
            DbEngine::Mongo => exec(
                &[
                    "mongosh",
                    "--quiet",
                    "--norc",
                    "--eval",
                    "quit(db.adminCommand({ ping: 1 }).ok ? 0 : 1)",
                ],
                env,
            ),
            DbEngine::Redis => exec(&["redis-cli", "-h", "127.0.0.1", "PING"], env),
        }
    }

    /// Writes a dump of the service's data to standard output.
    pub fn dump(self, id: &Identity) -> Exec {
        let env = self.client_env(id);
        match self {
            // -Z0: Berth compresses the stream itself; compressing twice costs CPU for nothing.
            DbEngine::Postgres => exec(
                &[
                    "pg_dump",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    id.user,
                    "-d",
                    id.database,
                    "-Fc",
                    "-Z0",
                ],
                env,
            ),
            DbEngine::Mysql | DbEngine::Mariadb => exec(
                &[
                    self.mysql_program("mysqldump", "mariadb-dump"),
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                    "--single-transaction",
                    "--routines",
                    "--triggers",
                    // The database as a plain argument (not `--databases`): the
                    // dump then names no database, so it restores into whichever
                    // the target service has (a drill's, a new service's).
                    id.database,
                ],
                env,
            ),
            DbEngine::Mongo => {
                let mut argv = vec!["mongodump", "--archive"];
                argv.extend(Self::mongo_auth(id));
                exec(&argv, env)
            }
            // BGSAVE first (see `redis_bgsave`), then the file it wrote.
            DbEngine::Redis => exec(&["cat", REDIS_RDB], env),
        }
    }

    /// Redis: asks for a fresh snapshot before the RDB file is read.
    pub fn redis_bgsave(id: &Identity) -> Exec {
        exec(
            &["redis-cli", "-h", "127.0.0.1", "BGSAVE"],
            DbEngine::Redis.client_env(id),
        )
    }

    /// Redis: `rdb_bgsave_in_progress` and `rdb_last_bgsave_status` come from here.
    pub fn redis_persistence_info(id: &Identity) -> Exec {
        exec(
            &["redis-cli", "-h", "127.0.0.1", "INFO", "persistence"],
            DbEngine::Redis.client_env(id),
        )
    }

    /// How a dump of this engine is restored into a running server.
    pub fn restore(self, id: &Identity) -> RestorePlan {
        let env = self.client_env(id);
        match self {
            DbEngine::Postgres => RestorePlan::Stdin(exec(
                &[
                    "pg_restore",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    id.user,
                    "-d",
                    id.database,
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                ],
                env,
            )),
            DbEngine::Mysql | DbEngine::Mariadb => RestorePlan::Stdin(exec(
                &[
                    self.mysql_program("mysql", "mariadb"),
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                    id.database,
                ],
                env,
            )),
            DbEngine::Mongo => {
                let mut argv = vec!["mongorestore", "--archive", "--drop"];
                argv.extend(Self::mongo_auth(id));
                RestorePlan::Stdin(exec(&argv, env))
            }
            DbEngine::Redis => RestorePlan::RedisRdb,
        }
    }

    /// Writes standard input to the incoming RDB file (Redis restore, first half).
    pub fn redis_receive() -> Exec {
        exec(&["dd", &format!("of={REDIS_INCOMING}"), "bs=65536"], Vec::new())
    }

    /// Redis restore, first half, in the running container: the programs that
    /// stage what is swapped in, each with what it reads on standard input
    /// (`None`: the backup's RDB stream). With AOF on, Redis reads only the AOF
    /// directory at start, so the RDB file is staged as the base of a new one
    /// with a manifest naming it; with AOF off, as the incoming RDB file.
    pub fn redis_stage(aof: bool) -> Vec<(Exec, Option<Vec<u8>>)> {
        if !aof {
            return vec![(Self::redis_receive(), None)];
        }
        let base = format!("{REDIS_AOF_INCOMING}/{REDIS_AOF_BASE}");
        let manifest = format!("{REDIS_AOF_INCOMING}/{REDIS_AOF_MANIFEST}");
        vec![
            (exec(&["rm", "-rf", REDIS_AOF_INCOMING], Vec::new()), Some(Vec::new())),
            (exec(&["mkdir", REDIS_AOF_INCOMING], Vec::new()), Some(Vec::new())),
            (exec(&["dd", &format!("of={base}"), "bs=65536"], Vec::new()), None),
            (
                exec(&["dd", &format!("of={manifest}")], Vec::new()),
                Some(format!("file {REDIS_AOF_BASE} seq 1 type b\n").into_bytes()),
            ),
        ]
    }

    /// Redis restore, second half: argument vectors run one after the other in
    /// one-off containers on the volume while the server is stopped. The old
    /// AOF directory goes either way: in RDB mode it is stale, and a server
    /// switched to AOF later would load it instead of the restored data.
    pub fn redis_swap(aof: bool) -> Vec<Vec<String>> {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        if aof {
            vec![
                v(&["rm", "-rf", REDIS_AOF_DIR]),
                v(&["mv", REDIS_AOF_INCOMING, REDIS_AOF_DIR]),
            ]
        } else {
            vec![
                v(&["rm", "-rf", REDIS_AOF_DIR]),
                v(&["mv", "-f", REDIS_INCOMING, REDIS_RDB]),
            ]
        }
    }

    /// The drill's check: prints counts that [`DbEngine::parse_counts`] reads.
    pub fn drill_check(self, id: &Identity) -> Exec {
        let env = self.client_env(id);
        match self {
            DbEngine::Postgres => exec(
                &[
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    id.user,
                    "-d",
                    id.database,
                    "-X",
                    "-A",
                    "-t",
                    "-F",
                    "\t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    PG_COUNT_SQL,
                ],
                env,
            ),
            DbEngine::Mysql | DbEngine::Mariadb => {
                // Exact counts (`information_schema.tables.table_rows` is an
                // InnoDB estimate): the server builds one `COUNT(*)` per table,
                // identifiers quoted with backticks doubled inside, and runs it
                // as a prepared statement. The database name passed the
                // identifier grammar (no quotes).
                let sql = MYSQL_COUNT_SQL.replace("{database}", id.database);
                let mut e = exec(
                    &[
                        self.mysql_program("mysql", "mariadb"),
                        "-h",
                        "127.0.0.1",
                        "-u",
                        "root",
                        "-N",
                        "-B",
                        "-e",
                    ],
                    env,
                );
                e.argv.push(sql);
                e
            }
            DbEngine::Mongo => {
                // mongosh takes no password file: the script authenticates with
                // the password from its environment.
                let script = format!(
                    "db.getSiblingDB('admin').auth('{}', process.env.BERTH_MONGO_PASSWORD); const d = db.getSiblingDB('{}'); d.getCollectionNames().sort().forEach(c => print(c + '\\t' + d.getCollection(c).countDocuments()))",
                    id.user, id.database
                );
                let mut e = exec(&["mongosh", "--quiet", "--norc", "--eval"], env);
                e.argv.push(script);
                e
            }
            DbEngine::Redis => exec(&["redis-cli", "-h", "127.0.0.1", "INFO", "keyspace"], env),
        }
    }

    /// Reads what [`DbEngine::drill_check`] printed.
    pub fn parse_counts(self, out: &str) -> Result<Counts, String> {
        let mut counts = Vec::new();
        for line in out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let parsed = if self == DbEngine::Redis {
                // db0:keys=12,expires=0,avg_ttl=0
                line.split_once(':').and_then(|(db, rest)| {
                    let keys = rest.split(',').find_map(|kv| kv.strip_prefix("keys="))?;
                    Some((db.to_owned(), keys.parse().ok()?))
                })
            } else {
                line.split_once('\t')
                    .and_then(|(name, n)| Some((name.to_owned(), n.trim().parse().ok()?)))
            };
            counts.push(parsed.ok_or_else(|| format!("unexpected line from the check: {line:?}"))?);
        }
        Ok(counts)
    }

    /// The URL a client uses to reach the service at `host:port`.
    pub fn connection_url(self, host: &str, port: u16, id: &Identity) -> String {
        let (db, user, pw) = (id.database, id.user, id.password);
        match self {
            DbEngine::Postgres => format!("postgres://{user}:{pw}@{host}:{port}/{db}"),
            DbEngine::Mysql | DbEngine::Mariadb => format!("mysql://{user}:{pw}@{host}:{port}/{db}"),
            DbEngine::Mongo => format!("mongodb://{user}:{pw}@{host}:{port}/{db}?authSource=admin"),
            DbEngine::Redis => format!("redis://default:{pw}@{host}:{port}"),
        }
    }
}

/// Redis's configuration file: the password, the data directory and the
/// persistence mode. RDB snapshots stay on in both modes (the image's default
/// save points): backups are RDB files.
fn redis_conf(id: &Identity) -> String {
    format!(
        "# Written by Berth when the container is created.\n\
         dir /data\n\
         requirepass {}\n\
         appendonly {}\n\
         appendfsync everysec\n",
        // Generated (`generate_password`): letters and digits, no quoting needed.
        id.password,
        if id.redis_aof { "yes" } else { "no" }
    )
}

/// A database or user name: `[a-z_][a-z0-9_]*`, at most 32 characters (MySQL's
/// limit for users). It is safe unquoted in URLs and as an SQL literal.
pub fn parse_identifier(field: &'static str, raw: &str) -> Result<String, ValidationError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    let b = s.as_bytes();
    let ok = b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if !ok {
        return Err(ValidationError::new(
            field,
            "must be lower-case letters, digits and '_', starting with a letter or '_' (at most 32)",
        ));
    }
    Ok(s.to_owned())
}

/// A generated password: 32 characters from `[A-Za-z0-9]` (about 190 bits), so it
/// needs no escaping in any connection string.
pub fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..32).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity<'static> = Identity {
        database: "shop",
        user: "app",
        password: "Secret123",
        root_password: "RootSecret456",
        redis_aof: true,
    };

    /// No secret of the identity anywhere in an argument vector.
    fn no_secret_in(argv: &[String]) {
        for a in argv {
            assert!(
                !a.contains(ID.password) && !a.contains(ID.root_password),
                "a secret on the command line: {argv:?}"
            );
        }
    }

    fn argv(e: &Exec) -> Vec<&str> {
        e.argv.iter().map(String::as_str).collect()
    }

    #[test]
    fn engines_parse_from_their_names_only() {
        for e in DbEngine::ALL {
            assert_eq!(DbEngine::parse(e.as_str()).unwrap(), e);
        }
        for bad in ["", "postgresql", "redis;ls", "POSTGRES"] {
            assert_eq!(DbEngine::parse(bad).unwrap_err().field, "engine");
        }
    }

    #[test]
    fn postgres_vectors() {
        let e = DbEngine::Postgres;
        assert_eq!(
            argv(&e.dump(&ID)),
            ["pg_dump", "-h", "127.0.0.1", "-U", "app", "-d", "shop", "-Fc", "-Z0"]
        );
        assert_eq!(e.dump(&ID).env, ["PGPASSWORD=Secret123"]);
        assert_eq!(
            argv(&e.readiness(&ID)),
            ["pg_isready", "-h", "127.0.0.1", "-U", "app", "-d", "shop"]
        );
        let RestorePlan::Stdin(r) = e.restore(&ID) else {
            panic!("postgres restores through stdin")
        };
        assert_eq!(
            &argv(&r)[..7],
            ["pg_restore", "-h", "127.0.0.1", "-U", "app", "-d", "shop"]
        );
        assert!(r.argv.contains(&"--clean".to_owned()) && r.argv.contains(&"--exit-on-error".to_owned()));
        assert_eq!(
            e.connection_url("db1", 5432, &ID),
            "postgres://app:Secret123@db1:5432/shop"
        );
        assert!(e.container_env(&ID).contains(&"POSTGRES_DB=shop".to_owned()));
        assert!(
            !e.dump(&ID).argv.iter().any(|a| a.contains("Secret123")),
            "no password in argv"
        );
    }

    /// MySQL and MariaDB share every vector but the programs' names: the
    /// MySQL names for MySQL, the `mariadb-*` names for MariaDB (MariaDB 11's
    /// images have no MySQL names). The MariaDB vectors run against a real
    /// server in `engine/tests/mariadb.rs`; MySQL's only here.
    #[test]
    fn mysql_and_mariadb_vectors() {
        let m = DbEngine::Mysql.dump(&ID);
        assert_eq!(
            argv(&m),
            [
                "mysqldump",
                "-h",
                "127.0.0.1",
                "-u",
                "root",
                "--single-transaction",
                "--routines",
                "--triggers",
                "shop"
            ]
        );
        // The tools run as root, with root's own password, in the environment.
        assert_eq!(m.env, ["MYSQL_PWD=RootSecret456"]);
        let programs = |e: DbEngine| {
            let RestorePlan::Stdin(r) = e.restore(&ID) else {
                panic!("restores through stdin")
            };
            [
                e.dump(&ID).argv[0].clone(),
                e.readiness(&ID).argv[0].clone(),
                r.argv[0].clone(),
                e.drill_check(&ID).argv[0].clone(),
            ]
        };
        assert_eq!(programs(DbEngine::Mysql), ["mysqldump", "mysqladmin", "mysql", "mysql"]);
        assert_eq!(
            programs(DbEngine::Mariadb),
            ["mariadb-dump", "mariadb-admin", "mariadb", "mariadb"]
        );
        for (my, maria) in [
            (DbEngine::Mysql.dump(&ID), DbEngine::Mariadb.dump(&ID)),
            (DbEngine::Mysql.readiness(&ID), DbEngine::Mariadb.readiness(&ID)),
            (DbEngine::Mysql.drill_check(&ID), DbEngine::Mariadb.drill_check(&ID)),
        ] {
            assert_eq!(my.argv[1..], maria.argv[1..], "only the program differs");
            assert_eq!(my.env, maria.env);
        }
        assert_eq!(
            argv(&DbEngine::Mysql.readiness(&ID)),
            ["mysqladmin", "ping", "-h", "127.0.0.1", "-u", "root", "--silent"]
        );
        assert_eq!(
            DbEngine::Mysql.restore(&ID),
            RestorePlan::Stdin(exec(
                &["mysql", "-h", "127.0.0.1", "-u", "root", "shop"],
                vec!["MYSQL_PWD=RootSecret456".into()]
            ))
        );
        let env = DbEngine::Mariadb.container_env(&ID);
        assert!(env.contains(&"MARIADB_DATABASE=shop".to_owned()));
        assert!(env.contains(&"MARIADB_ROOT_PASSWORD=RootSecret456".to_owned()));
        assert!(env.contains(&"MARIADB_PASSWORD=Secret123".to_owned()));
        assert!(DbEngine::Mysql
            .container_env(&ID)
            .contains(&"MYSQL_ROOT_PASSWORD=RootSecret456".to_owned()));
        for e in [DbEngine::Mysql, DbEngine::Mariadb] {
            no_secret_in(&e.dump(&ID).argv);
            no_secret_in(&e.readiness(&ID).argv);
            no_secret_in(&e.drill_check(&ID).argv);
            assert!(e.container_files(&ID).is_empty());
        }
        let check = DbEngine::Mysql.drill_check(&ID);
        let sql = check.argv.last().unwrap();
        assert!(sql.contains("table_schema = 'shop'"));
        // Exact counts, not InnoDB's estimate; identifiers backtick-quoted.
        assert!(
            sql.contains("COUNT(*) FROM `") && sql.contains("REPLACE(table_name, '`', '``')"),
            "{sql}"
        );
        assert!(!sql.contains("table_rows"), "{sql}");
        assert_eq!(DbEngine::Mariadb.drill_check(&ID).argv[0], "mariadb");
        assert_eq!(
            DbEngine::Mysql.connection_url("h", 3306, &ID),
            "mysql://app:Secret123@h:3306/shop"
        );
    }

    #[test]
    fn mongo_vectors() {
        let e = DbEngine::Mongo;
        assert_eq!(
            argv(&e.dump(&ID)),
            [
                "mongodump",
                "--archive",
                "--username",
                "app",
                "--authenticationDatabase",
                "admin",
                "--config",
                "/etc/berth-mongo-tools.yaml"
            ]
        );
        // The tools read the password from the file the container is made with.
        let files = e.container_files(&ID);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, MONGO_TOOLS_CONF);
        assert_eq!(files[0].mode, 0o600);
        assert_eq!(String::from_utf8_lossy(&files[0].contents), "password: 'Secret123'\n");
        let RestorePlan::Stdin(r) = e.restore(&ID) else {
            panic!()
        };
        assert_eq!(&argv(&r)[..3], ["mongorestore", "--archive", "--drop"]);
        assert!(r.argv.ends_with(&["--config".to_owned(), MONGO_TOOLS_CONF.to_owned()]));
        let ready = e.readiness(&ID);
        assert_eq!(ready.argv[0], "mongosh");
        assert!(ready.argv.last().unwrap().contains("ping"));
        // mongosh authenticates from its environment.
        let check = e.drill_check(&ID);
        assert!(check.argv.last().unwrap().contains("process.env.BERTH_MONGO_PASSWORD"));
        assert_eq!(check.env, ["BERTH_MONGO_PASSWORD=Secret123"]);
        for x in [e.dump(&ID), r, ready, check] {
            no_secret_in(&x.argv);
        }
        assert_eq!(
            e.connection_url("m", 27017, &ID),
            "mongodb://app:Secret123@m:27017/shop?authSource=admin"
        );
    }

    #[test]
    fn redis_vectors() {
        let e = DbEngine::Redis;
        assert_eq!(argv(&e.readiness(&ID)), ["redis-cli", "-h", "127.0.0.1", "PING"]);
        assert_eq!(e.readiness(&ID).env, ["REDISCLI_AUTH=Secret123"]);
        assert_eq!(
            argv(&DbEngine::redis_bgsave(&ID)),
            ["redis-cli", "-h", "127.0.0.1", "BGSAVE"]
        );
        assert_eq!(argv(&e.dump(&ID)), ["cat", "/data/dump.rdb"]);
        assert_eq!(e.restore(&ID), RestorePlan::RedisRdb);
        assert_eq!(
            argv(&DbEngine::redis_receive()),
            ["dd", "of=/data/berth-restore.rdb", "bs=65536"]
        );
        assert_eq!(
            DbEngine::redis_swap(false),
            [
                vec!["rm", "-rf", "/data/appendonlydir"],
                vec!["mv", "-f", "/data/berth-restore.rdb", "/data/dump.rdb"]
            ]
        );
        assert_eq!(
            DbEngine::redis_swap(true),
            [
                vec!["rm", "-rf", "/data/appendonlydir"],
                vec!["mv", "/data/berth-restore.aof", "/data/appendonlydir"]
            ]
        );
        // With AOF on, the RDB file is staged as the base of a new AOF directory.
        let staged = DbEngine::redis_stage(true);
        let steps: Vec<Vec<&str>> = staged.iter().map(|(e, _)| argv(e)).collect();
        assert_eq!(
            steps,
            [
                vec!["rm", "-rf", "/data/berth-restore.aof"],
                vec!["mkdir", "/data/berth-restore.aof"],
                vec!["dd", "of=/data/berth-restore.aof/appendonly.aof.1.base.rdb", "bs=65536"],
                vec!["dd", "of=/data/berth-restore.aof/appendonly.aof.manifest"],
            ]
        );
        assert!(staged[2].1.is_none(), "the backup streams into the base file");
        assert_eq!(
            staged[3].1.as_deref(),
            Some(&b"file appendonly.aof.1.base.rdb seq 1 type b\n"[..])
        );
        assert_eq!(DbEngine::redis_stage(false).len(), 1);
        // The password is in the configuration file on the volume, not the command.
        assert_eq!(e.command(&ID).unwrap(), ["redis-server", "/data/berth-redis.conf"]);
        let files = e.container_files(&ID);
        assert_eq!(files.len(), 1);
        assert_eq!(
            (files[0].path.as_str(), files[0].mode, files[0].uid),
            (REDIS_CONF, 0o600, 999)
        );
        let conf = String::from_utf8(files[0].contents.clone()).unwrap();
        assert!(
            conf.contains("requirepass Secret123\n") && conf.contains("appendonly yes\n"),
            "{conf}"
        );
        let rdb_only = Identity { redis_aof: false, ..ID };
        let conf = String::from_utf8(e.container_files(&rdb_only)[0].contents.clone()).unwrap();
        assert!(conf.contains("appendonly no\n"), "{conf}");
        no_secret_in(&e.command(&ID).unwrap());
        assert_eq!(e.connection_url("r", 6379, &ID), "redis://default:Secret123@r:6379");
    }

    #[test]
    fn counts_are_parsed_or_refused() {
        assert_eq!(
            DbEngine::Postgres.parse_counts("public.a\t3\npublic.b\t0\n").unwrap(),
            vec![("public.a".to_owned(), 3), ("public.b".to_owned(), 0)]
        );
        assert_eq!(
            DbEngine::Redis
                .parse_counts("# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\n")
                .unwrap(),
            vec![("db0".to_owned(), 12)]
        );
        assert!(DbEngine::Postgres.parse_counts("ERROR: relation").is_err());
        assert_eq!(DbEngine::Redis.parse_counts("# Keyspace\r\n").unwrap(), vec![]);
    }

    #[test]
    fn identifiers_are_allow_listed() {
        assert_eq!(parse_identifier("database", " shop_1 ").unwrap(), "shop_1");
        for bad in [
            "",
            "1abc",
            "a-b",
            "a;drop",
            "a b",
            "a\nb",
            "Shop",
            "a$(id)",
            &"a".repeat(33),
        ] {
            assert_eq!(
                parse_identifier("database", bad).unwrap_err().field,
                "database",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_are_long_and_url_safe() {
        let p = generate_password();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, generate_password());
    }
}

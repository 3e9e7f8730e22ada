//! Where settings come from, in order of precedence:
//!
//! 1. the environment (the process environment over `.env`), `NAME=value`;
//! 2. the environment, `NAME_FILE=/path` for a secret (the file's content is the value: the
//!    convention of Docker and Kubernetes secrets and of Vault Agent / External Secrets
//!    templates);
//! 3. the configuration file named by `KYROS_CONFIG` (TOML, keys of [`super::options::OPTIONS`]),
//!    `key = value`, or `key_file = "/path"` for a secret;
//! 4. the default.
//!
//! Setting both `NAME` and `NAME_FILE` in the environment (or `key` and `key_file` in the file)
//! is refused, naming the variable. A secret file loses one trailing newline; an empty file is
//! unset. A secret file, or a configuration file holding secrets, that other users can read
//! draws a warning (not a refusal: Kubernetes mounts secrets 0644 unless told otherwise, and a
//! pod's files are not shared with other users of the node). Values never appear in messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::options::{self, OptionSpec};
use super::{ConfigError, Vars};

/// Where the effective value of a setting came from (`kyros config show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The configuration file (`KYROS_CONFIG`).
    File,
    /// The environment or `.env`.
    Env,
    /// A secret file, named by `NAME_FILE` or by `key_file` in the configuration file.
    SecretFile(PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Default => "default".into(),
            Source::File => "file".into(),
            Source::Env => "env".into(),
            Source::SecretFile(p) => format!("_FILE ({})", p.display()),
        }
    }
}

/// The variables after every source is applied, with where each came from and the files they
/// were read from (what a reload watches).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub vars: Vars,
    pub sources: BTreeMap<&'static str, Source>,
    /// The configuration file and every secret file read.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// The environment the variables were resolved from.
    pub base: Vars,
}

/// Applies `NAME_FILE` and `KYROS_CONFIG` to the environment's variables.
pub fn resolve(env: &Vars) -> Result<Resolved, ConfigError> {
    let mut out = Resolved {
        base: env.clone(),
        ..Resolved::default()
    };
    let file = match env.get("KYROS_CONFIG") {
        Some(path) => Some(read_config_file(Path::new(path), &mut out)?),
        None => None,
    };
    for (name, value) in env.0.iter() {
        out.vars.set(name, value.clone());
    }
    // Per-provider client secrets (`OIDC_<NAME>_CLIENT_SECRET_FILE`), environment only.
    for (name, path) in env.0.iter() {
        let Some(var) = name.strip_suffix("_FILE") else {
            continue;
        };
        if !(var.ends_with("_CLIENT_SECRET") && options::is_provider_var(var)) {
            continue;
        }
        out.vars.remove(name);
        if env.get(var).is_some() {
            return Err(ConfigError(format!(
                "{var} and {name} are both set; set only one"
            )));
        }
        let path = PathBuf::from(path.trim());
        match read_secret_file(name, &path, &mut out.warnings)? {
            Some(v) => {
                out.vars.set(var, v);
            }
            None => {
                out.vars.remove(var);
            }
        }
        out.files.push(path);
    }
    for spec in options::OPTIONS {
        let file_var = format!("{}_FILE", spec.env);
        let from_env = env.get(spec.env).is_some();
        let from_env_file = spec.secret && env.get(&file_var).is_some();
        if from_env && from_env_file {
            return Err(ConfigError(format!(
                "{} and {file_var} are both set; set only one",
                spec.env
            )));
        }
        out.vars.remove(&file_var);
        if from_env {
            out.sources.insert(spec.env, Source::Env);
            continue;
        }
        if from_env_file {
            let path = PathBuf::from(env.get(&file_var).unwrap_or_default());
            apply_secret_file(spec, &file_var, &path, &mut out)?;
            continue;
        }
        match file.as_ref().and_then(|f| f.get(spec.key)) {
            Some(FileValue::Value(v)) => {
                out.vars.set(spec.env, v.clone());
                out.sources.insert(spec.env, Source::File);
            }
            Some(FileValue::SecretFile(path)) => {
                let what = format!(
                    "{}_file in {}",
                    spec.key,
                    env.get("KYROS_CONFIG").unwrap_or("")
                );
                apply_secret_file(spec, &what, path, &mut out)?;
            }
            None => {
                out.sources.insert(spec.env, Source::Default);
            }
        }
    }
    Ok(out)
}

enum FileValue {
    Value(String),
    SecretFile(PathBuf),
}

fn apply_secret_file(
    spec: &'static OptionSpec,
    what: &str,
    path: &Path,
    out: &mut Resolved,
) -> Result<(), ConfigError> {
    let value = read_secret_file(what, path, &mut out.warnings)?;
    out.files.push(path.to_owned());
    match value {
        Some(v) => {
            out.vars.set(spec.env, v);
            out.sources
                .insert(spec.env, Source::SecretFile(path.to_owned()));
        }
        // An empty file is unset.
        None => {
            out.vars.remove(spec.env);
            out.sources.insert(spec.env, Source::Default);
        }
    }
    Ok(())
}

/// The value in a secret file: one trailing newline (`\n` or `\r\n`) removed; `None` when
/// empty. Errors name `what` (the variable) and the path, never the content.
pub fn read_secret_file(
    what: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError(format!(
            "{what}: {} could not be read ({})",
            path.display(),
            e.kind()
        ))
    })?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| ConfigError(format!("{what}: {} is not UTF-8 text", path.display())))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    warn_if_shared(what, path, warnings);
    Ok(if text.is_empty() { None } else { Some(text) })
}

/// A warning when users other than the owner may read `path` (mode bits 0o077).
fn warn_if_shared(what: &str, path: &Path, warnings: &mut Vec<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            warnings.push(format!(
                "{what}: {} can be read by other users (mode {:o}); make it 0600 or 0400",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (what, path, warnings);
}

/// Reads the TOML configuration file: `[section]` tables of [`options::OPTIONS`] keys. Unknown
/// sections or keys, and values that are neither text, a whole number, true/false nor a list of
/// those, are refused with the key's name.
fn read_config_file(
    path: &Path,
    out: &mut Resolved,
) -> Result<BTreeMap<&'static str, FileValue>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "KYROS_CONFIG: {} could not be read ({})",
            path.display(),
            e.kind()
        ))
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The parser's message quotes the offending line, which may hold a secret: keep the
        // position only.
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                format!(" at line {line}")
            })
            .unwrap_or_default();
        ConfigError(format!(
            "KYROS_CONFIG: {} is not valid TOML{at}",
            path.display()
        ))
    })?;
    out.files.push(path.to_owned());
    let mut values = BTreeMap::new();
    let mut holds_secrets = false;
    for (section, entries) in &table {
        let toml::Value::Table(entries) = entries else {
            return Err(ConfigError(format!(
                "KYROS_CONFIG: `{section}` must be a [section] (see kyros.example.toml)"
            )));
        };
        for (key, value) in entries {
            let full = format!("{section}.{key}");
            if let Some(spec) = options::by_key(&full) {
                if values.contains_key(spec.key) {
                    return Err(ConfigError(format!(
                        "KYROS_CONFIG: {full} and {full}_file are both set; set only one"
                    )));
                }
                holds_secrets |= spec.secret;
                values.insert(spec.key, FileValue::Value(scalar(&full, value)?));
                continue;
            }
            let secret = full
                .strip_suffix("_file")
                .and_then(options::by_key)
                .filter(|s| s.secret);
            match secret {
                Some(spec) => {
                    if values.contains_key(spec.key) {
                        return Err(ConfigError(format!(
                            "KYROS_CONFIG: {} and {full} are both set; set only one",
                            spec.key
                        )));
                    }
                    let toml::Value::String(p) = value else {
                        return Err(ConfigError(format!(
                            "KYROS_CONFIG: {full} must be a path in quotes"
                        )));
                    };
                    values.insert(spec.key, FileValue::SecretFile(PathBuf::from(p)));
                }
                None => {
                    return Err(ConfigError(format!(
                        "KYROS_CONFIG: unknown setting {full} (see kyros.example.toml)"
                    )));
                }
            }
        }
    }
    if holds_secrets {
        warn_if_shared("KYROS_CONFIG", path, &mut out.warnings);
    }
    Ok(values)
}

/// A file value as the text its environment variable would hold.
fn scalar(key: &str, value: &toml::Value) -> Result<String, ConfigError> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        toml::Value::Array(items) => items
            .iter()
            .map(|v| one(v).filter(|s| !s.contains(',')))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        v => one(v),
    }
    .ok_or_else(|| {
        ConfigError(format!(
            "KYROS_CONFIG: {key} must be text, a whole number, true/false or a list of text"
        ))
    })
}

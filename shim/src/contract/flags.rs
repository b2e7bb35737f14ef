//! The shim's command line, parsed with the rules of Go's `flag` package that containerd's own
//! shims use: `-name value`, `-name=value`, `--name` alike; boolean flags take no value (or
//! `=true`/`=false`); parsing stops at the first argument that is not a flag (the action) or at
//! `--`.

use anyhow::{bail, Context};

/// Everything containerd (or a user) can pass on the command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    /// `-namespace`: the containerd namespace that owns the shim.
    pub namespace: String,
    /// `-id`: the task (container) id.
    pub id: String,
    /// `-address`: containerd's gRPC address.
    pub address: String,
    /// `-publish-binary`: containerd's binary (for `containerd publish`).
    pub publish_binary: String,
    /// `-bundle`: the bundle (given to the `delete` action; else the working directory).
    pub bundle: String,
    /// `-socket`: the socket the daemon serves (legacy daemons; newer ones inherit it as fd 3).
    pub socket: String,
    /// `-debug-socket`: accepted and ignored (no debug server).
    pub debug_socket: String,
    /// `-debug`: log at debug level.
    pub debug: bool,
    /// `-v` / `-version`: print the version and exit.
    pub version: bool,
    /// `-info`: read options from stdin, print a `RuntimeInfo` and exit.
    pub info: bool,
    /// The first non-flag argument: `start`, `delete`, or empty for the daemon.
    pub action: String,
}

enum Kind {
    Bool(fn(&mut Flags) -> &mut bool),
    Text(fn(&mut Flags) -> &mut String),
}

/// The flags, by name.
fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "namespace" => Kind::Text(|f| &mut f.namespace),
        "id" => Kind::Text(|f| &mut f.id),
        "address" => Kind::Text(|f| &mut f.address),
        "publish-binary" => Kind::Text(|f| &mut f.publish_binary),
        "bundle" => Kind::Text(|f| &mut f.bundle),
        "socket" => Kind::Text(|f| &mut f.socket),
        "debug-socket" => Kind::Text(|f| &mut f.debug_socket),
        "debug" => Kind::Bool(|f| &mut f.debug),
        "v" | "version" => Kind::Bool(|f| &mut f.version),
        "info" => Kind::Bool(|f| &mut f.info),
        _ => return None,
    })
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => bail!("invalid boolean value {value:?} for flag -{name}"),
    }
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(args: I) -> anyhow::Result<Flags>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        if arg == "--" {
            flags.action = args
                .next()
                .map(|a| a.as_ref().to_string())
                .unwrap_or_default();
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            flags.action = arg.to_string();
            break;
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            bail!("bad flag syntax: {arg}");
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        match kind(name).with_context(|| format!("flag provided but not defined: -{name}"))? {
            Kind::Bool(field) => {
                *field(&mut flags) = match inline {
                    Some(v) => parse_bool(name, v)?,
                    None => true,
                }
            }
            Kind::Text(field) => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => args
                        .next()
                        .map(|v| v.as_ref().to_string())
                        .with_context(|| format!("flag needs an argument: -{name}"))?,
                };
                *field(&mut flags) = value;
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_start_command_line() {
        let f = parse([
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "k8s.io");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "c1");
        assert!(f.debug);
        assert_eq!(f.action, "start");
    }

    #[test]
    fn go_flag_forms() {
        let f = parse([
            "--namespace=ns",
            "-bundle=/b",
            "-debug=false",
            "delete",
            "-x",
        ])
        .unwrap();
        assert_eq!(f.namespace, "ns");
        assert_eq!(f.bundle, "/b");
        assert!(!f.debug);
        assert_eq!(f.action, "delete");
        let f = parse(["-v"]).unwrap();
        assert!(f.version);
        assert!(parse(["-version"]).unwrap().version);
        assert!(parse(["-info"]).unwrap().info);
        let f = parse(["-namespace", "n", "-socket", "unix:///s", "--", "-odd"]).unwrap();
        assert_eq!(f.socket, "unix:///s");
        assert_eq!(f.action, "-odd");
        assert_eq!(parse::<[&str; 0], &str>([]).unwrap(), Flags::default());
    }

    #[test]
    fn errors_name_the_flag() {
        let e = parse(["-nosuch"]).unwrap_err().to_string();
        assert!(e.contains("-nosuch"), "{e}");
        let e = parse(["-id"]).unwrap_err().to_string();
        assert!(e.contains("needs an argument: -id"), "{e}");
        let e = parse(["-debug=maybe"]).unwrap_err().to_string();
        assert!(e.contains("-debug"), "{e}");
        assert!(parse(["---x"]).is_err());
        assert!(parse(["-=x"]).is_err());
    }
}

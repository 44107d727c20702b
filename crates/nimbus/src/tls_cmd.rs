//! `nimbus cert …` (the cluster CA and role certificates) and the transport every node
//! and cluster command uses: mutual TLS from `--tls-dir`, or plaintext only when the
//! operator passed `--insecure-plaintext`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nimbus_tls::issue::{self, Request};
use nimbus_tls::{Role, Tls, Transport};

use crate::cli::{CertCommand, TlsArgs};

pub fn run(cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::InitCa { out } => {
            issue::init_ca(&out)?;
            println!(
                "CA created in {} (keep {} secret; give nodes only ca.pem through `nimbus cert issue`)",
                out.display(),
                issue::CA_KEY
            );
        }
        CertCommand::Issue {
            ca,
            role,
            name,
            san,
            days,
            out,
        } => {
            let id = issue::issue(
                &ca,
                &Request {
                    role,
                    name,
                    sans: san,
                    days,
                },
                &out,
            )?;
            println!("issued {} ({}) into {}", id, id.uri(), out.display());
        }
    }
    Ok(())
}

/// The transport for a process acting as `role`. Without `--tls-dir` a node refuses to
/// start unless the operator passed `--insecure-plaintext`, and then says so loudly.
/// `role: None` accepts a certificate of any role (for calls every role may make).
pub fn transport(args: &TlsArgs, role: Option<Role>) -> anyhow::Result<Transport> {
    let named = role.map_or("admin".to_string(), |r| r.to_string());
    match (&args.tls_dir, args.insecure_plaintext) {
        (Some(_), true) => anyhow::bail!("--tls-dir and --insecure-plaintext exclude each other"),
        (Some(dir), false) => {
            let tls = match role {
                Some(role) => Tls::load(dir, role),
                None => Tls::load_any(dir),
            }
                .with_context(|| format!("loading TLS material from {}", dir.display()))?;
            tls.spawn_reloader();
            tracing::debug!(identity = %tls.identity(), "mutual TLS");
            Ok(Transport::Tls(tls))
        }
        (None, true) => {
            tracing::warn!(
                "INSECURE: --insecure-plaintext: no TLS and no authentication between nodes; \
                 anyone who can reach this process's ports can read and write the whole cluster. \
                 Never use this outside a private test network."
            );
            Ok(Transport::Plaintext)
        }
        (None, false) => anyhow::bail!(
            "no TLS material: pass --tls-dir DIR (ca.pem, cert.pem, key.pem from `nimbus cert issue --role {named}`; \
             or set NIMBUS_TLS_DIR), or --insecure-plaintext to run without authentication"
        ),
    }
}

/// `nimbus dev`'s own CA and certificates under `DATA_DIR/tls`, made on first start:
/// `ca/` (the CA), `meta/`, `gateway/`, `worker/` (the embedded roles) and, at the top,
/// an admin certificate for the CLI (`nimbus --tls-dir DATA_DIR/tls account …`).
pub struct DevTls {
    pub root: PathBuf,
}

impl DevTls {
    pub fn ensure(data: &Path) -> anyhow::Result<Self> {
        let root = data.join("tls");
        issue::make_private_dir(&root)?;
        let ca = root.join("ca");
        if !ca.join(issue::CA_KEY).exists() {
            issue::init_ca(&ca)?;
        }
        for (role, dir) in [
            (Role::Admin, root.clone()),
            (Role::Meta, root.join("meta")),
            (Role::Gateway, root.join("gateway")),
            (Role::Worker, root.join("worker")),
        ] {
            if !dir.join("cert.pem").exists() {
                issue::issue(
                    &ca,
                    &Request {
                        role,
                        name: format!("dev-{role}"),
                        sans: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
                        days: 3650,
                    },
                    &dir,
                )?;
            }
        }
        Ok(Self { root })
    }

    pub fn transport(&self, role: Role) -> anyhow::Result<Transport> {
        let dir = match role {
            Role::Admin => self.root.clone(),
            r => self.root.join(r.as_str()),
        };
        let tls = Tls::load(&dir, role).with_context(|| format!("loading {}", dir.display()))?;
        Ok(Transport::Tls(tls))
    }
}

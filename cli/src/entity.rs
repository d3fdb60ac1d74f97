//! `toolmesh entity`: which other organisations' CAs the mesh trusts. Changes go through the
//! registry's admin API and need an admin identity (an operator certificate of the mesh CA).

use crate::ops::{align, to_json, ListArgs, RegistryAccess};
use crate::Failure;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use toolmesh_core::registry_api::EntityRequest;
use toolmesh_core::text::escape;
use toolmesh_core::{Error, ErrorKind};

#[derive(Subcommand)]
pub enum EntityCommand {
    /// Trust NAME's CA: agents whose certificates chain to it may register, call and be called.
    Add(AddArgs),
    /// The entities the mesh trusts.
    List(ListArgs),
    /// Stop trusting NAME's CA: its agents are evicted and refused within one heartbeat interval.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct AddArgs {
    name: String,
    /// The entity's CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    ca_cert: PathBuf,
    /// The SPIFFE trust domain the entity's certificates name (spiffe://TD/...); its CA may vouch
    /// for no other. Default: the trust domain the CA was made for (`toolmesh certs ca
    /// --trust-domain`), else NAME in lower case.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    #[command(flatten)]
    access: RegistryAccess,
}

#[derive(Args)]
pub struct RevokeArgs {
    name: String,
    #[command(flatten)]
    access: RegistryAccess,
}

pub async fn run(command: EntityCommand) -> Result<(), Failure> {
    match command {
        EntityCommand::Add(args) => {
            let ca_cert = std::fs::read_to_string(&args.ca_cert).map_err(|e| {
                Failure::usage(Error::new(
                    ErrorKind::CertificateFile,
                    format!("cannot read the CA certificate {}: {e}", args.ca_cert.display()),
                ))
            })?;
            let (registry, _) = args.access.connect()?;
            let entity = registry.add_entity(&EntityRequest { name: args.name, ca_cert, trust_domain: args.trust_domain }).await?;
            println!(
                "entity '{}' added: agents with certificates from '{}' (sha256 {}) naming spiffe://{}/... may join",
                escape(&entity.name),
                escape(&entity.ca_subject),
                escape(&entity.ca_fingerprint),
                escape(&entity.trust_domain)
            );
        }
        EntityCommand::List(args) => {
            let (registry, _) = args.access.connect()?;
            let list = registry.list_entities().await?;
            if args.json {
                println!("{}", to_json(&list)?);
            } else if list.entities.is_empty() {
                println!("no entities: only the mesh CA is trusted");
            } else {
                let mut rows = vec![["ENTITY", "TRUST DOMAIN", "CA SUBJECT", "CA SHA-256", "CA NOT AFTER", "ADDED"].map(String::from)];
                for e in list.entities {
                    rows.push([e.name, e.trust_domain, e.ca_subject, e.ca_fingerprint, e.ca_not_after, e.added_at]);
                }
                print!("{}", align(&rows));
            }
        }
        EntityCommand::Revoke(args) => {
            let (registry, _) = args.access.connect()?;
            registry.revoke_entity(&args.name).await?;
            println!("entity '{}' revoked: its agents are evicted and refused", escape(&args.name));
        }
    }
    Ok(())
}

//! Flags several `toolmesh certs` subcommands share: validity and key type.

use clap::Args;
use toolmesh_ca::{KeyType, DEFAULT_LEAF_DAYS};

/// The flags of a subcommand that issues leaf certificates (`init`, `issue`).
#[derive(Args)]
pub(super) struct LeafOptions {
    #[command(flatten)]
    pub(super) validity: Validity,
    #[command(flatten)]
    pub(super) key: KeyArg,
}

#[derive(Args)]
pub(super) struct Validity {
    /// Trust domain of the SPIFFE IDs (spiffe://DOMAIN/ROLE/NAME); by default the CA's (the one
    /// `certs ca --trust-domain` was given), else toolmesh.local.
    #[arg(long, value_name = "DOMAIN")]
    pub(super) trust_domain: Option<String>,
    /// How many days the leaf certificates are valid (the CA of `init` gets at least ten years).
    #[arg(long, default_value_t = DEFAULT_LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub(super) days: u32,
}

#[derive(Args)]
pub(super) struct KeyArg {
    /// Key algorithm of new keys.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_key_type, value_name = "ecdsa-p256|rsa-2048|rsa-3072|rsa-4096")]
    pub(super) key_type: KeyType,
}

fn parse_key_type(name: &str) -> Result<KeyType, String> {
    KeyType::parse(name).map_err(|e| e.message().to_owned())
}

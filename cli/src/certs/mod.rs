//! `toolmesh certs`: a mesh CA and the certificates it issues (ECDSA P-256 by default, RSA on
//! request; SPIFFE URI SANs; keys 0600, certificates 0644), an expiry check, and rotation in
//! place. Nothing is ever overwritten without `--force`, except by `rotate`, whose purpose it is.

//!
//! One file per subcommand (its flags and what it does): `ca`, `init`, `issue`, `check`,
//! `rotate`; `options` holds the flags several share, `names` what a certificate name and a
//! trust domain may be. Issuing itself is the `toolmesh-ca` crate.

mod ca;
mod check;
mod init;
mod issue;
mod names;
mod options;
mod rotate;

use crate::Failure;
use ca::{ca, CaArgs};
use check::{check, CheckArgs};
use clap::Subcommand;
use init::{init, InitArgs};
use issue::{issue, IssueArgs};
use rotate::{rotate, RotateArgs};
use toolmesh_core::{Error, ErrorKind};

/// DIR/ca.pem and DIR/ca.key: the CA's files in a certificate directory.
const CA_NAME: &str = "ca";

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a mesh CA: DIR/ca.pem (the trust bundle) and DIR/ca.key (0600).
    Ca(CaArgs),
    /// Issue DIR/NAME.{pem,key} from the CA in DIR.
    Issue(IssueArgs),
    /// Create a CA, the registry's and the operator's certificates, and one per agent.
    Init(InitArgs),
    /// Show every certificate under DIR; exit 1 when any expires within --warn-days.
    Check(CheckArgs),
    /// Re-issue certificates in place from the CA in DIR: same subject and SANs, a new key.
    Rotate(RotateArgs),
}

pub fn run(command: CertsCommand) -> Result<(), Failure> {
    match command {
        CertsCommand::Ca(args) => ca(args),
        CertsCommand::Issue(args) => issue(args),
        CertsCommand::Init(args) => init(args),
        CertsCommand::Check(args) => check(args),
        CertsCommand::Rotate(args) => rotate(args),
    }
}

fn usage(message: String) -> Failure {
    Failure::usage(Error::new(ErrorKind::InvalidConfig, message))
}

//! `kad keygen` and the key file it writes: one line, the ed25519 secret seed (32 bytes)
//! as 64 lowercase hex characters, then a newline; created with mode 0600 on Unix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use kad_tokio::Keypair;

use crate::fail;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the new key (refuses to replace an existing file).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn keygen(args: KeygenArgs) -> ExitCode {
    let mut secret = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut secret) {
        return fail(2, &format!("no randomness from the operating system: {e}"));
    }
    let keypair = Keypair::from_secret(secret);
    if let Err(e) = write_key_file(&args.out, &keypair) {
        return fail(2, &format!("key file {}: {e}", args.out.display()));
    }
    println!("{}", keypair.public_key().to_hex());
    ExitCode::SUCCESS
}

/// Writes `keypair`'s secret to a new file readable by its owner only.
fn write_key_file(path: &Path, keypair: &Keypair) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{}", hex::encode(keypair.secret()))?;
    file.sync_all()
}

/// Reads a key file written by `kad keygen`.
pub fn read_key_file(path: &Path) -> Result<Keypair, String> {
    let err = |why: &dyn std::fmt::Display| format!("key file {}: {why}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret)
        .map_err(|_| err(&"not 64 hex characters (a key from `kad keygen`)"))?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file is readable by others; chmod 600 it");
        }
    }
    Ok(Keypair::from_secret(secret))
}

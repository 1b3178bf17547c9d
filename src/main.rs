//! The `tickcast` command: parse flags, then serve or print a token. Nothing else.

use std::process::ExitCode;
use tickcast::auth::{self, Claims};
use tickcast::config::{Cli, Command, TokenArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::parse_or_explain() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Token(args)) => token(args),
        None => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(tickcast::server::serve(cli.serve)) {
                Ok(()) => {
                    // Sessions still draining past --drain-timeout are not waited for.
                    runtime.shutdown_background();
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.status, &e.message),
            }
        }
    }
}

fn fail(status: u8, message: &str) -> ExitCode {
    eprintln!("tickcast: {message}");
    ExitCode::from(status)
}

fn token(args: TokenArgs) -> ExitCode {
    let secret = match auth::load_secret(args.auth_secret_file.as_deref()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return fail(
                2,
                "token: no secret: pass --auth-secret-file PATH or set TICKCAST_AUTH_SECRET",
            )
        }
        Err(e) => return fail(2, &format!("token: {e}")),
    };
    if let Some(bad) = args.symbols.iter().find(|s| {
        let name = s.strip_suffix('*').unwrap_or(s);
        !(name.is_empty() || tickcast::symbol::is_valid(name))
    }) {
        return fail(
            2,
            &format!("token: --symbols: `{bad}` is not a symbol or prefix*"),
        );
    }
    let now = tickcast::clock::now_secs();
    let claims = Claims {
        sub: args.sub,
        exp: now + args.ttl.as_secs().max(1),
        iat: Some(now),
        nbf: None,
        jti: (!args.reusable).then(|| {
            args.jti
                .unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)))
        }),
        symbols: (!args.symbols.is_empty()).then_some(args.symbols),
    };
    println!("{}", auth::sign(&secret, &claims));
    ExitCode::SUCCESS
}

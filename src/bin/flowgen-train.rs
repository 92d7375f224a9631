//! `flowgen-train`: the offline trainer. Argument parsing only; the work is in the library.

fn main() -> std::process::ExitCode {
    eprintln!("error: flowgen-train is not implemented yet");
    std::process::ExitCode::FAILURE
}

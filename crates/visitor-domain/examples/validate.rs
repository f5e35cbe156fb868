//! Reads one visitor JSON object from standard input and prints every rule it breaks, one line
//! per problem (`key: Code: description`), as Create Visitor would judge it; with `--update`,
//! as the body of Update Visitor. Exits 0 when it is valid, 1 when it breaks a rule, 2 when the
//! input is not a JSON object.
//!
//! ```sh
//! echo '{"email": "nope", "banned": "yes"}' | cargo run -q -p visitor-domain --example validate
//! ```

use std::io::Read;
use std::process::ExitCode;

use serde_json::Value;
use visitor_domain::{NewVisitor, ValidationErrors, VisitorPatch};

fn main() -> ExitCode {
    let update = std::env::args().skip(1).any(|arg| arg == "--update");
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read standard input: {error}");
        return ExitCode::from(2);
    }
    let body = match serde_json::from_str::<Value>(&input) {
        Ok(Value::Object(body)) => body,
        Ok(_) => {
            eprintln!("the input must be a JSON object");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("the input is not valid JSON: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome: Result<(), ValidationErrors> = if update {
        VisitorPatch::from_json(&body).map(drop)
    } else {
        NewVisitor::from_json(&body).map(drop)
    };
    match outcome {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for (key, problems) in errors.iter() {
                for problem in problems {
                    println!("{key}: {problem}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

//! The `visitor-http` binary (its routes arrive with the HTTP issue).

fn main() {
    println!("visitor-http: no routes yet");
}

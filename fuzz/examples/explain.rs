//! Prints the operations a `pipeline` input decodes to, then runs it:
//! `cargo run --release --example explain -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: explain FILE");
    let data = std::fs::read(&path).expect("read");
    print!("{}", sluice_fuzz::pipeline::explain(&data));
    sluice_fuzz::pipeline::run(&data);
    println!("ok");
}

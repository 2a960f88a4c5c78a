//! Pure-Rust cost of masking and unmasking an IPv4-sized value (no PostgreSQL involved):
//! `cargo bench -p pg_mask_core`. The SQL-level figures are in bench/masking.sql.

use pg_mask_core::KeyRing;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let ring = KeyRing::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
    let values: Vec<String> = (0..1_000_000u32)
        .map(|i| format!("{}.{}.{}.{}", 1 + i / 65536 % 223, i / 256 % 256, i % 256, i % 7))
        .collect();
    for _ in 0..2 {
        let t = Instant::now();
        let tokens: Vec<String> = values.iter().map(|v| ring.mask(black_box(v))).collect();
        let mask_ns = t.elapsed().as_nanos() as f64 / values.len() as f64;
        let t = Instant::now();
        let mut n = 0usize;
        for tok in &tokens {
            n += ring.unmask(black_box(tok)).map(|s| s.len()).unwrap_or(0);
        }
        let unmask_ns = t.elapsed().as_nanos() as f64 / values.len() as f64;
        let t = Instant::now();
        let checked = tokens.iter().filter(|t| ring.is_token(black_box(t))).count();
        let check_ns = t.elapsed().as_nanos() as f64 / values.len() as f64;
        println!("mask {mask_ns:.0} ns/value, unmask {unmask_ns:.0} ns/value, is_token {check_ns:.0} ns/value ({n} {checked})");
    }
}

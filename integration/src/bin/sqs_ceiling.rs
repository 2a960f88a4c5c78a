//! Benchmark helper (bench/run.sh): the SQS emulator's own receive+delete ceiling, measured with
//! N concurrent Rust tasks and no database, so the emulator rather than the client is the limit.
//! Usage: sqs_ceiling ENDPOINT QUEUE_NAME [TASKS]; prints `<messages> <seconds>` (the final empty
//! 1 s long poll excluded).

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (endpoint, name) = (args.get(1).ok_or("ENDPOINT")?, args.get(2).ok_or("QUEUE_NAME")?);
    let tasks: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(8);
    let client = integration::emulator::client_for(endpoint).await;
    let url =
        client.get_queue_url().queue_name(name).send().await?.queue_url.ok_or("no queue url")?;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (client, url) = (client.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await?;
                let msgs = out.messages.unwrap_or_default();
                if msgs.is_empty() {
                    return Ok::<usize, aws_sdk_sqs::Error>(n);
                }
                let entries = msgs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .set_receipt_handle(m.receipt_handle.clone())
                            .build()
                            .ok()
                    })
                    .collect();
                client
                    .delete_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                n += msgs.len();
            }
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    println!("{} {:.3}", total, (start.elapsed().as_secs_f64() - 1.0).max(0.001));
    Ok(())
}

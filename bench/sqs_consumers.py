#!/usr/bin/env python3
"""Reference SQS consumers for the feeder benchmark (bench/run.sh). Not part of the product.

  ceiling  N threads of boto3 receive(10) + delete_message_batch, no database: what the
           emulator itself can serve, the upper bound for any consumer.
  baseline the classic take-home solution: one boto3 client, 10 messages per receive, one
           INSERT + COMMIT per receive (the table's pg_mask trigger masks ip/device_id), then
           delete. Invalid messages are skipped, as that solution does.
Both run until a receive comes back empty and print `<messages> <seconds>`.
"""
import json
import os
import sys
import threading
import time

import boto3


def client():
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def ceiling(queue_url, threads):
    counts = [0] * threads

    def work(i):
        sqs = client()
        while True:
            out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            msgs = out.get("Messages", [])
            if not msgs:
                return
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(msgs)],
            )
            counts[i] += len(msgs)

    start = time.monotonic()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # The last empty long poll (1 s) is not work.
    return sum(counts), time.monotonic() - start - 1.0


def baseline(queue_url, dsn):
    import psycopg2

    sqs = client()
    db = psycopg2.connect(dsn)
    cur = db.cursor()
    n = 0
    start = time.monotonic()
    while True:
        out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        msgs = out.get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            try:
                e = json.loads(m["Body"])
                parts = (e["app_version"].split(".") + ["0", "0"])[:3]
                version = int(parts[0]) * 1000000 + int(parts[1]) * 1000 + int(parts[2])
                cur.execute(
                    "INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale,"
                    " app_version, create_date, message_id) VALUES (%s, %s, %s, %s, %s, %s, current_date, %s)",
                    (e["user_id"], e["device_type"], e["ip"], e["device_id"], e["locale"], version, m["MessageId"]),
                )
            except (KeyError, ValueError, AttributeError):
                pass
        db.commit()
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
        )
        n += len(msgs)
    return n, time.monotonic() - start - 1.0


if __name__ == "__main__":
    mode, queue_url = sys.argv[1], sys.argv[2]
    # Emulators spell queue URLs their own way; ask for the canonical one by name.
    queue_url = client().get_queue_url(QueueName=queue_url.rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
    if mode == "ceiling":
        n, s = ceiling(queue_url, int(sys.argv[3]) if len(sys.argv) > 3 else 8)
    else:
        n, s = baseline(queue_url, sys.argv[3])
    print(n, round(s, 3))

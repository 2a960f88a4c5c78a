#!/bin/bash
# LocalStack ready hook: creates login-queue and puts data/sample_messages.jsonl on it, once.
set -euo pipefail
queue=login-queue
url=$(awslocal sqs create-queue --queue-name "$queue" --query QueueUrl --output text)
depth=$(awslocal sqs get-queue-attributes --queue-url "$url" --attribute-names ApproximateNumberOfMessages \
  --query Attributes.ApproximateNumberOfMessages --output text)
if [ "$depth" != "0" ]; then echo "seed: $queue already holds $depth messages"; exit 0; fi
n=0
while IFS= read -r body || [ -n "$body" ]; do
  [ -n "$body" ] || continue
  awslocal sqs send-message --queue-url "$url" --message-body "$body" >/dev/null
  n=$((n + 1))
done < /data/sample_messages.jsonl
echo "seed: put $n messages on $queue"

#!/bin/bash
# LocalStack ready hook: creates login-queue with a dead-letter queue, and puts
# data/sample_messages.jsonl on it, once.
#
# The redrive policy moves a message to login-queue-dlq after it has been received
# maxReceiveCount (5) times without being deleted: that is where the feeder's released messages
# (refused by the database even as rejects) end up. The feeder never deletes them itself.
set -euo pipefail
queue=login-queue
dlq_url=$(awslocal sqs create-queue --queue-name "$queue-dlq" --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)
policy="{\"deadLetterTargetArn\":\"$dlq_arn\",\"maxReceiveCount\":\"5\"}"
url=$(awslocal sqs create-queue --queue-name "$queue" --query QueueUrl --output text)
# Set (not only at creation): an existing queue gets the policy too.
awslocal sqs set-queue-attributes --queue-url "$url" \
  --attributes "{\"RedrivePolicy\":\"${policy//\"/\\\"}\"}"
depth=$(awslocal sqs get-queue-attributes --queue-url "$url" --attribute-names ApproximateNumberOfMessages \
  --query Attributes.ApproximateNumberOfMessages --output text)
if [ "$depth" != "0" ]; then echo "seed: $queue already holds $depth messages"; exit 0; fi
n=0
while IFS= read -r body || [ -n "$body" ]; do
  [ -n "$body" ] || continue
  awslocal sqs send-message --queue-url "$url" --message-body "$body" >/dev/null
  n=$((n + 1))
done < /data/sample_messages.jsonl
echo "seed: put $n messages on $queue (dead-letter queue $queue-dlq after 5 receives)"

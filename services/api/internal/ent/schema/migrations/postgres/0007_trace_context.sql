-- 0007_trace_context: the trace context of the request that wrote an outbox
-- row, which the relay's publish continues.
ALTER TABLE "outboxes" ADD COLUMN "trace_context" jsonb NULL;

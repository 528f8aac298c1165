-- 0005: the OpenTelemetry trace id of each attempt (32 hex digits; empty
-- when tracing was off or the trace not sampled), so that a person can go
-- from the audit log to the trace.

ALTER TABLE attempts ADD COLUMN trace_id text NOT NULL DEFAULT '';

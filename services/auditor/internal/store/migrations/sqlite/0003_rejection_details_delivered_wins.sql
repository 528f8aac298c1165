-- 0003: rejection details, and a delivered attempt outranks the dead letter
-- of its round (see the Postgres migration). Times are Unix nanoseconds.

ALTER TABLE rejections ADD COLUMN api_key text NOT NULL DEFAULT '';
ALTER TABLE rejections ADD COLUMN user_agent text NOT NULL DEFAULT '';
ALTER TABLE rejections ADD COLUMN body_size integer NOT NULL DEFAULT 0;

UPDATE deliveries SET mark_kind = 3 WHERE status = 'delivered' AND mark_kind = 1;

UPDATE deliveries SET
    status = 'delivered',
    mark_kind = 3,
    mark_n = (SELECT max(a.attempt) FROM attempts a
              WHERE a.event_id = deliveries.event_id AND a.destination = deliveries.destination
                AND a.stream_seq = deliveries.mark_seq AND a.outcome = 'delivered'),
    updated_at = (SELECT a.started_at + a.duration_us * 1000 FROM attempts a
                  WHERE a.event_id = deliveries.event_id AND a.destination = deliveries.destination
                    AND a.stream_seq = deliveries.mark_seq AND a.outcome = 'delivered'
                  ORDER BY a.attempt DESC LIMIT 1)
WHERE status IN ('dead_lettered', 'retrying')
  AND EXISTS (SELECT 1 FROM attempts a
              WHERE a.event_id = deliveries.event_id AND a.destination = deliveries.destination
                AND a.stream_seq = deliveries.mark_seq AND a.outcome = 'delivered');

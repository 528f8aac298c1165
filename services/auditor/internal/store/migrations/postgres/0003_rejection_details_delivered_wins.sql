-- 0003: the rejection details ingress sends and 0001 dropped, and the
-- delivery merge's new rule: within one round (one EVENTS message), a
-- delivered attempt outranks every attempt and the dead letter of that
-- round (mark kind 3). The partner has the event; showing the delivery as
-- dead-lettered would invite a replay that delivers it twice.

ALTER TABLE rejections ADD COLUMN api_key text NOT NULL DEFAULT '';
ALTER TABLE rejections ADD COLUMN user_agent text NOT NULL DEFAULT '';
ALTER TABLE rejections ADD COLUMN body_size bigint NOT NULL DEFAULT 0;

-- Rows whose latest happening is a delivered attempt take the new kind, so
-- that a dead letter of the same round arriving later does not outrank it.
UPDATE deliveries SET mark_kind = 3 WHERE status = 'delivered' AND mark_kind = 1;

-- Rows a dead letter (or a later failed attempt) of a delivered round put
-- back to dead_lettered or retrying: delivered, as of the last delivered
-- attempt of that round.
UPDATE deliveries d SET
    status = 'delivered',
    mark_kind = 3,
    mark_n = a.attempt,
    updated_at = a.started_at + a.duration_us * interval '1 microsecond'
FROM attempts a
WHERE d.status IN ('dead_lettered', 'retrying')
  AND a.event_id = d.event_id AND a.destination = d.destination AND a.stream_seq = d.mark_seq
  AND a.outcome = 'delivered'
  AND a.attempt = (SELECT max(b.attempt) FROM attempts b
                   WHERE b.event_id = d.event_id AND b.destination = d.destination
                     AND b.stream_seq = d.mark_seq AND b.outcome = 'delivered');
